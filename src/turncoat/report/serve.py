"""`turncoat explore --serve`: the explorer on loopback, plus blind labelling in the browser.

The labelling page (/label) never receives an answer's arm: the server hands out one answer at a time from the
same shuffled pool as `turncoat label` and writes each label to the same labels file, so the CLI and the browser
can share one reading. Requests must carry the page's token (a custom header, which other sites' pages cannot send
to loopback without a CORS preflight that this server never grants) and a loopback Host (no DNS rebinding).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import BaseModel, Field

from turncoat.core.errors import InputError
from turncoat.report.explore import Source, explorer_data, json_for_script, label_pool, render_page
from turncoat.report.text import visible
from turncoat.results.labels import LABELS, LabelStore
from turncoat.results.statistics import Thresholds

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class Label(BaseModel):
    """One label from the browser, as `turncoat label --set ID LABEL [--score N]` takes it."""
    id: str
    label: str
    score: float | None = Field(default=None, ge=0, le=100)


def create_app(sources: list[Source], labels_file: str | Path | None, thresholds: Thresholds = Thresholds(),
               seed: int | None = None, title: str = "turncoat answers", token: str | None = None):
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    token = token or secrets.token_urlsafe(16)
    store = LabelStore(labels_file) if labels_file else None
    pool = label_pool(store, sources, seed) if store else []
    by_id = {item.id: item for item in pool}
    app = FastAPI(title="turncoat explore", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = token

    @app.middleware("http")
    async def loopback_only(request: Request, call_next):
        host = (request.headers.get("host") or "").rsplit(":", 1)[0]
        if host not in LOOPBACK:
            return JSONResponse({"detail": f"host {host!r} refused: this server answers on loopback only"}, 403)
        if request.url.path.startswith("/api/") and request.headers.get("x-turncoat-token") != token:
            return JSONResponse({"detail": "missing or wrong X-Turncoat-Token (open /label to get one)"}, 403)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def explorer():
        data = explorer_data(sources, thresholds, labels_file if store and store.path.is_file() else None, title)
        return render_page("explore.html.jinja", "explore.js", title=title, data=json_for_script(data))

    def next_item(skip: set[str]) -> dict:
        labels = store.read()
        todo = [item for item in pool if item.id not in labels and item.id not in skip]
        figures = {"labelled": len(labels), "pool": len(pool), "remaining": len(todo), "labels_file": str(store.path)}
        if not todo:
            return {"done": True, **figures}
        item = todo[0]  # the arm stays on the server
        return {"done": False, "id": item.id, "question": visible(item.question), "answer": visible(item.answer),
                **figures}

    def require_store():
        if store is None:
            raise HTTPException(404, detail="no labels file: start with --serve --labels FILE to label")

    @app.get("/label", response_class=HTMLResponse)
    def label_page():
        require_store()
        return render_page("label.html.jinja", "label.js", title=f"{title}: blind labelling", token=token,
                           labels=LABELS, labels_file=str(store.path))

    @app.get("/api/next")
    def api_next(skip: str = ""):
        require_store()
        return next_item(set(filter(None, skip.split(","))))

    @app.post("/api/label")
    def api_label(given: Label, skip: str = ""):
        require_store()
        if given.id not in by_id:
            raise HTTPException(404, detail=f"no answer with id {given.id!r} in the pool of {store.path}")
        try:
            store.add(given.id, given.label, given.score)
        except InputError as error:
            raise HTTPException(400, detail=str(error)) from None
        return next_item(set(filter(None, skip.split(","))))

    return app


def serve(sources: list[Source], labels_file: str | Path | None, port: int, thresholds: Thresholds = Thresholds(),
          seed: int | None = None, title: str = "turncoat answers", on_start=None) -> None:
    """Serve on 127.0.0.1:`port` until interrupted (loopback only, by design)."""
    import uvicorn

    app = create_app(sources, labels_file, thresholds, seed, title)
    if on_start:
        on_start(app)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
