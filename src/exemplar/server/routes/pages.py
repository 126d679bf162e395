"""The HTML pages: login, labeling, annotating, review and dashboard (none is in the OpenAPI
schema).

``/label`` labels whole items (classification); detection and segmentation projects label
objects on ``/annotate`` (``static/annotate.js`` with the viewer of ``static/viewer.js``), and
``/label`` sends them there.

A page without a logged-in session redirects to ``/login``. The pages only render the
frame; their scripts (``static/*.js``) call the JSON API with the session's CSRF token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from exemplar.project.stream import is_stream_project
from exemplar.server.deps import State, page_csrf, page_user, templates
from exemplar.server.security import CONTENT_SECURITY_POLICY
from exemplar.store.accounts import Role

__all__ = ["ANNOTATE_CSP", "RESERVED_KEYS", "REVIEW_KEYS", "class_keys", "router"]

#: The object labeling page's policy: the strict one, plus ``'unsafe-eval'`` for scripts.
#: Annotorious draws with PixiJS 7, whose WebGL shader system compiles its uniform upload
#: functions with ``new Function`` and refuses to start without it. Inline scripts stay
#: forbidden (injected markup still cannot run), and the page's own scripts never eval.
ANNOTATE_CSP = f"{CONTENT_SECURITY_POLICY}; script-src 'self' 'unsafe-eval'"

#: Keys the labeling page reserves for actions.
RESERVED_KEYS = frozenset({"x", "s", "u", "?"})
#: Keys the review page reserves: move down / up, reject, help.
REVIEW_KEYS = frozenset({"j", "k", "x", "?"})


def class_keys(classes: list[str], reserved: frozenset[str] = RESERVED_KEYS) -> list[str]:
    """The key that picks each class on the labeling page (or, with ``REVIEW_KEYS``, review).

    When every class name is a single, distinct character that is not an action key (for
    example digits ``0``–``9``), the key is the name itself, so pressing ``3`` labels "3".
    Otherwise the first ten classes get ``1``–``9`` and ``0``; the rest have no key.
    """
    single = all(len(c) == 1 for c in classes) and len(set(classes)) == len(classes)
    if single and not set(classes) & reserved:
        return list(classes)
    return [str((i + 1) % 10) if i < 10 else "" for i in range(len(classes))]


def router() -> APIRouter:
    """``/``, ``/login``, ``/label``, ``/annotate``, ``/review`` and ``/dashboard``."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse("/label", status_code=303)

    @pages.get("/login")
    def login_page(request: Request, error: int = 0) -> Response:
        return templates.TemplateResponse(
            request, "login.html", {"csrf": page_csrf(request), "error": bool(error)}
        )

    @pages.get("/label")
    def label_page(request: Request, state: State) -> Response:
        user, csrf = page_user(request, state.project)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        if state.project.config.project.objects:
            return RedirectResponse("/annotate", status_code=303)
        return templates.TemplateResponse(
            request,
            "label.html",
            {
                "csrf": csrf,
                "user": user.name,
                "project": state.project.config.project.name,
                "classes": list(
                    zip(state.project.classes, class_keys(state.project.classes), strict=True)
                ),
                # A stream project's page is a never-ending feed (docs/streams.md).
                "feed": is_stream_project(state.project),
            },
        )

    @pages.get("/annotate")
    def annotate_page(request: Request, state: State) -> Response:
        user, csrf = page_user(request, state.project)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        page = templates.TemplateResponse(
            request,
            "annotate.html",
            {
                "csrf": csrf,
                "user": user.name,
                "project": state.project.config.project.name,
                "classes": list(state.project.classes),
            },
        )
        page.headers["content-security-policy"] = ANNOTATE_CSP
        return page

    @pages.get("/review")
    def review_page(request: Request, state: State) -> Response:
        user, csrf = page_user(request, state.project)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        allowed = user.role in (Role.REVIEWER.value, Role.ADMIN.value)
        return templates.TemplateResponse(
            request,
            "review.html",
            {
                "csrf": csrf,
                "user": user.name,
                "project": state.project.config.project.name,
                "classes": list(
                    zip(
                        state.project.classes,
                        class_keys(state.project.classes, REVIEW_KEYS),
                        strict=True,
                    )
                ),
                "allowed": allowed,
            },
            status_code=200 if allowed else 403,
        )

    @pages.get("/dashboard")
    def dashboard_page(request: Request, state: State) -> Response:
        user, csrf = page_user(request, state.project)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        return templates.TemplateResponse(
            request,
            "dashboard.html",
            {
                "csrf": csrf,
                "user": user.name,
                "role": user.role,
                "project": state.project.config.project.name,
            },
        )

    return pages
