"""API documentation that works offline: /docs and /redoc, and the OpenAPI text behind them.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and are blank without a network; ours
is one self-contained page (no external script, style or font) that reads /openapi.json and
shows every route with its description, request example and error responses. `describe` adds
those descriptions, examples and errors to the schema, from one table below, so the routes'
code stays as it is.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

PARAMS_LINK = ("Every parameter, with its label, default and bounds, is listed by "
               "[`GET /easyphoto/v1/params`](/easyphoto/v1/params); `params` is a JSON object "
               "of those names, any left out keep their default.")
_ERROR_TEXT = {
    400: "The request is wrong: `detail` says what and how to fix it.",
    401: "Wrong or missing credentials (HTTP Basic, the `--api-auth` users).",
    404: "No such job.",
    409: "The job is in a state where this cannot be done (`detail` names it).",
    422: "A required field is missing or has the wrong type.",
    429: "The queue is full: retry after `Retry-After` seconds.",
    503: "The studio cannot serve this now (no base model, workspace not writable); "
         "retry after `Retry-After` seconds.",
}
_ERROR_EXAMPLES = {
    400: "User id 'bad/id' contains '/'. Use 1-64 letters, digits, '_' or '-' (it becomes a "
         "folder name and a LoRA name).",
    401: "EasyPhoto API: wrong or missing credentials (see --api-auth).",
    404: "No job 'a1b2c3d4e5f6' in this studio.",
    409: "Job a1b2c3d4e5f6 has already ended (done): nothing to cancel.",
    429: "The queue is full (64 jobs waiting, at most 64): wait for some to finish, or cancel "
         "some.",
    503: "No base model is set: start the studio with --base-model PATH/TO/sd15.safetensors "
         "(in the WebUI: load an SD1.5 checkpoint).",
}
_JOB = {"id": "a1b2c3d4e5f6", "kind": "train", "state": "queued", "user_ids": ["alice"],
        "progress": {"stage": "preprocess", "step": 0, "total": 0}}
LANG_NOTE = ("Errors come in English or 简体中文: send `Accept-Language: zh-CN` or a `lang` "
             "field/query parameter (`en`, `zh`).")

# (method, path) -> description, request example (None: no body), error statuses.
ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/easyphoto/v1/version"): {
        "description": "EasyPhoto's version, the backend (diffusers or the host), the workspace, "
                       "the base model in use and what is still missing for a first portrait "
                       "(`missing`: each model with its download name or where to put it).",
        "errors": [401]},
    ("get", "/easyphoto/v1/params"): {
        "description": "Every training and generation parameter: label, default, bounds, "
                       "choices and help. " + PARAMS_LINK, "errors": [401]},
    ("get", "/easyphoto/v1/user_ids"): {
        "description": "User ids that have a folder in the workspace, and those with a "
                       "trained LoRA (`trained`): the ids `generate` accepts.", "errors": [401]},
    ("post", "/easyphoto/v1/train"): {
        "description": "Queue the training of a user id from 5-20 photos of one person "
                       "(multipart form: `user_id`, `params` as JSON text, `photos` files). "
                       "Answers at once with the job; follow it with `GET /jobs/{job_id}`. "
                       "Training an existing id replaces its LoRA when the new run succeeds. "
                       + PARAMS_LINK,
        "example": {"user_id": "alice", "params": '{"max_train_steps": 400}',
                    "photos": ["photo1.jpg", "photo2.jpg", "..."]},
        "response": _JOB, "errors": [400, 401, 422, 429, 503]},
    ("post", "/easyphoto/v1/generate"): {
        "description": "Queue a portrait: paint the user ids (comma-separated, left to right) "
                       "into the faces of a template photo (multipart form: `user_ids`, "
                       "`params` as JSON text, `template` file). The portrait is at "
                       "`GET /jobs/{job_id}/image` when the job is done. " + PARAMS_LINK,
        "example": {"user_ids": "alice,bob", "params": '{"seed": 42, "lora_weight": 0.8}',
                    "template": "template.jpg"},
        "response": {**_JOB, "kind": "generate", "user_ids": ["alice", "bob"]},
        "errors": [400, 401, 422, 429, 503]},
    ("get", "/easyphoto/v1/jobs"): {
        "description": "Recent and running jobs, newest first (`limit`, `active=true` for "
                       "queued/running only).", "errors": [401, 503]},
    ("get", "/easyphoto/v1/jobs/{job_id}"): {
        "description": "A job's state (queued, running, interrupted, done, failed, cancelled), "
                       "progress (stage, step, total, loss, ETA) and result.",
        "response": {**_JOB, "state": "running", "progress": {
            "stage": "train", "step": 120, "total": 800, "loss": 0.084, "eta": 310.0}},
        "errors": [401, 404]},
    ("post", "/easyphoto/v1/jobs/{job_id}/cancel"): {
        "description": "Cancel a queued, running or interrupted job; a cancelled training "
                       "leaves the user's previous LoRA untouched.", "errors": [401, 404, 409]},
    ("post", "/easyphoto/v1/jobs/{job_id}/resume"): {
        "description": "Queue an interrupted, cancelled or failed job again; a training "
                       "continues from its last checkpoint.", "errors": [401, 404, 409, 429]},
    ("get", "/easyphoto/v1/jobs/{job_id}/image"): {
        "description": "The PNG of a finished generate job; it carries its infotext (the "
                       "`parameters` chunk the WebUI's PNG Info reads).",
        "errors": [401, 404, 409]},
    ("post", "/easyphoto/easyphoto_train_forward"): {
        "description": "sd-webui-EasyPhoto's training route, field for field: `user_id`, "
                       "`instance_images` (base64 images) and its training options. Waits for "
                       "the training to end and answers `{\"message\": ...}` as EasyPhoto does. "
                       "Unknown fields are refused by name.",
        "example": {"user_id": "alice", "instance_images": ["<base64 jpeg>", "..."],
                    "max_train_steps": 800, "steps_per_photos": 200},
        "response": {"message": "The training has been completed."}, "errors": [400, 401]},
    ("post", "/easyphoto/easyphoto_infer_forward"): {
        "description": "sd-webui-EasyPhoto's generation route: `user_ids`, "
                       "`init_image` or `selected_template_images` (base64), and its options. "
                       "Answers `{\"message\", \"outputs\": [base64 png]}` as EasyPhoto does.",
        "example": {"user_ids": ["alice"], "init_image": "<base64 jpeg>", "seed": -1,
                    "first_diffusion_steps": 50},
        "response": {"message": "Success", "outputs": ["<base64 png>"]},
        "errors": [400, 401]},
}


def enrich_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Add descriptions, request/response examples and error responses to our operations."""
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            doc = ROUTES.get((method, path))
            if doc is None or not isinstance(operation, dict):
                continue
            operation["description"] = doc["description"] + "\n\n" + LANG_NOTE
            if "example" in doc:
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    media["example"] = doc["example"]
            responses = operation.setdefault("responses", {})
            if "response" in doc:
                for media in responses.get("200", {}).get("content", {}).values():
                    media["example"] = doc["response"]
            for status in doc.get("errors", []):
                answer = responses.setdefault(str(status), {})
                answer["description"] = _ERROR_TEXT[status]
                if status in _ERROR_EXAMPLES:
                    answer["content"] = {"application/json": {
                        "schema": {"type": "object", "properties": {"detail": {"type": "string"}}},
                        "example": {"detail": _ERROR_EXAMPLES[status]}}}
    return schema


def describe(app: FastAPI) -> None:
    """Make `app.openapi()` carry our descriptions (computed once, like FastAPI's own)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if not getattr(app, "_easyphoto_described", False):
            app.openapi_schema = enrich_schema(original())
            app._easyphoto_described = True  # type: ignore[attr-defined]
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def add_offline_docs(app: FastAPI, *, title: str = "EasyPhoto API") -> None:
    """/docs and /redoc as one page that needs no network. Build the app with
    `docs_url=None, redoc_url=None` so FastAPI's CDN pages are not registered first."""
    describe(app)
    page = PAGE.replace("%TITLE%", html.escape(title)).replace(
        "%OPENAPI%", html.escape(app.openapi_url or "/openapi.json"))

    for url in ("/docs", "/redoc"):
        app.add_api_route(url, lambda: HTMLResponse(page), include_in_schema=False,
                          methods=["GET"])


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>%TITLE%</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1em;color:#222}
h1{font-size:1.6em} details{border:1px solid #ccd;border-radius:6px;margin:.5em 0;padding:.4em .8em}
summary{cursor:pointer;font-weight:600} code,pre{font:13px ui-monospace,monospace}
pre{background:#f4f4f8;padding:.6em;overflow:auto;border-radius:4px}
.m{display:inline-block;min-width:4em;color:#fff;border-radius:3px;padding:0 .4em;margin-right:.5em}
.get{background:#2a7ab8}.post{background:#3a9a4a}.delete{background:#c33}.put{background:#b80}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}
</style></head><body>
<h1>%TITLE%</h1><p id="info">Loading <a href="%OPENAPI%">%OPENAPI%</a>…</p><div id="ops"></div>
<script>
(function(){
  var esc=function(s){return String(s).replace(/[&<>"]/g,function(c){
    return {"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c];});};
  var md=function(s){return esc(s||"").replace(/`([^`]+)`/g,"<code>$1</code>")
    .replace(/\\[([^\\]]+)\\]\\(([^)]+)\\)/g,'<a href="$2">$1</a>').replace(/\\n\\n/g,"<br><br>");};
  var json=function(v){return "<pre>"+esc(JSON.stringify(v,null,2))+"</pre>";};
  var open=location.pathname.slice(-5)==="redoc";
  fetch("%OPENAPI%",{credentials:"same-origin"}).then(function(r){return r.json();})
  .then(function(spec){
    document.getElementById("info").innerHTML=md((spec.info.description||"")+
      " Version "+spec.info.version+' · <a href="%OPENAPI%">OpenAPI</a>');
    var out=[];
    Object.keys(spec.paths).forEach(function(path){
      Object.keys(spec.paths[path]).forEach(function(method){
        var op=spec.paths[path][method], h=[];
        h.push("<details"+(open?" open":"")+"><summary><span class='m "+method+"'>"+
          method.toUpperCase()+"</span><code>"+esc(path)+"</code> — "+esc(op.summary||"")+
          "</summary>");
        if(op.description) h.push("<p>"+md(op.description)+"</p>");
        if(op.parameters&&op.parameters.length){
          h.push("<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th></tr>");
          op.parameters.forEach(function(p){h.push("<tr><td><code>"+esc(p.name)+"</code></td><td>"+
            esc(p.in)+"</td><td>"+esc((p.schema||{}).type||"")+"</td><td>"+
            (p.required?"yes":"")+"</td></tr>");});
          h.push("</table>");}
        var body=(op.requestBody||{}).content||{};
        Object.keys(body).forEach(function(type){
          h.push("<p>Request <code>"+esc(type)+"</code></p>");
          if(body[type].example!==undefined) h.push(json(body[type].example));});
        Object.keys(op.responses||{}).forEach(function(code){
          var r=op.responses[code]; h.push("<p><b>"+esc(code)+"</b> "+md(r.description)+"</p>");
          var c=r.content||{}; Object.keys(c).forEach(function(t){
            if(c[t].example!==undefined) h.push(json(c[t].example));});});
        h.push("</details>"); out.push(h.join(""));});});
    document.getElementById("ops").innerHTML=out.join("");
  }).catch(function(e){document.getElementById("info").textContent=
    "Could not read %OPENAPI%: "+e;});
})();
</script></body></html>
"""
