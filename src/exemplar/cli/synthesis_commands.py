"""``exemplar simulate --scenario synthesis``: query synthesis against pool-based selection."""

from __future__ import annotations

from pathlib import Path

from exemplar.cli.simulate_common import (
    load_simulation_dataset,
    print_aulc_table,
    print_outputs,
    progress_bar,
)

__all__ = ["simulate_synthesis"]


def simulate_synthesis(
    dataset: str,
    *,
    strategies: str,
    model: str | None,
    model_params: dict[str, object],
    seeds: int,
    initial: int,
    batch_size: int,
    cycles: int,
    test_size: float,
    label_column: str | None,
    jobs: int,
    out: Path,
    device: str = "cpu",
    noise_rate: float = 0.0,
    label_cost: float = 1.0,
    engineering_cost: float = 0.0,
) -> None:
    """Run the synthesis arm and the pool-based ``strategies`` with paired seeds, print a
    table and the verdict, and write ``results.csv``, ``summary.json`` and ``report.html``.

    Synthesized points are labeled by a random-forest oracle fit on the pool's ground truth
    (see :mod:`exemplar.simulate.synthesis`); the Python API offers the other oracles.
    ``device``, ``label_cost`` and ``engineering_cost`` go to every arm; a ``noise_rate``
    other than 0 is refused (the oracle model's answers carry no label noise).
    """
    from exemplar.simulate import SimulationConfig
    from exemplar.simulate.synthesis import (
        SYNTHESIS_ARM,
        SynthesisConfig,
        run_synthesis_simulation,
        summarize_synthesis,
        validate_synthesis_config,
        write_synthesis_outputs,
    )

    names = tuple(s.strip() for s in strategies.split(",") if s.strip())
    data = load_simulation_dataset(dataset, label_column)
    config = SynthesisConfig(
        SimulationConfig(
            dataset=data.name,
            model="logreg" if model is None else model,
            model_params=model_params,
            strategies=names,
            seeds=seeds,
            initial=initial,
            batch_size=batch_size,
            cycles=cycles,
            test_size=test_size,
            jobs=jobs,
            device=device,
            noise_rate=noise_rate,
            label_cost=label_cost,
            engineering_cost=engineering_cost,
        )
    )
    validate_synthesis_config(config, data)
    arms = (*config.pool_strategies, SYNTHESIS_ARM)
    total = len(arms) * seeds * (cycles + 1)
    with progress_bar("simulating", f"{data.name} · {', '.join(arms)}", total) as on_progress:
        sres = run_synthesis_simulation(config, data, on_progress=on_progress)
    summary = summarize_synthesis(sres)
    paths = write_synthesis_outputs(sres, summary, out)
    print_aulc_table(
        f"{data.name}: normalized AULC over {seeds} seeds",
        "arm",
        "synthesis minus arm [95% CI]",
        summary["strategies"],
        summary["synthesis"]["versus"],
    )
    print_outputs(summary["verdict"], paths)
