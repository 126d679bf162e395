"""The video pages: ``/videos`` (the project's videos, server-rendered, each linking to its
page) and the labeling page ``/video/{media_id}`` (``templates/video.html`` and
``static/video.js``, drawing with the viewer of ``static/viewer.js``).

``/video/{media_id}?frame=N`` opens at frame N (the nearest imported one; the script reads
the parameter). The labeling page only renders the frame; its script calls the video API
(:mod:`exemplar.server.routes.video`) with the session's CSRF token. A page without a
logged-in session redirects to ``/login``; an unknown video is a 404 page.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from exemplar.project.video import list_videos
from exemplar.server.deps import PathId, State, page_user, templates
from exemplar.server.routes.pages import ANNOTATE_CSP
from exemplar.store.media import get_media
from exemplar.store.schema import MediaKind

__all__ = ["router"]


def router() -> APIRouter:
    """``/videos`` and ``/video/{media_id}``."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/videos")
    def videos_page(request: Request, state: State) -> Response:
        user, _ = page_user(request, state.project)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        return templates.TemplateResponse(
            request,
            "videos.html",
            {
                "user": user.name,
                "project": state.project.config.project.name,
                "videos": list_videos(state.project),
            },
        )

    @pages.get("/video/{media_id}")
    def video_page(media_id: PathId, request: Request, state: State) -> Response:
        user, csrf = page_user(request, state.project)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        with state.project.db.read() as s:
            media = get_media(s, media_id)
            if media is None or media.kind != MediaKind.VIDEO:
                raise HTTPException(404, f"no video {media_id}")
            name = media.uri.rsplit("/", 1)[-1]
        page = templates.TemplateResponse(
            request,
            "video.html",
            {
                "csrf": csrf,
                "user": user.name,
                "project": state.project.config.project.name,
                "classes": list(state.project.classes),
                "media_id": media_id,
                "video_name": name,
            },
        )
        # the viewer draws with PixiJS (Annotorious), which needs 'unsafe-eval' (pages.py)
        page.headers["content-security-policy"] = ANNOTATE_CSP
        return page

    return pages
