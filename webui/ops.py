"""The Operations page and its JSON API: take a backup of the home, list the backups in
``HOME/backups`` with their manifests, sizes and signature status, and download one.
Restoring is a CLI command (`falaj restore`): it makes a new home, not a change to the
running one."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request, send_file

from appliance.auth import require
from appliance.errors import FalajError
from appliance.ops import backup as backups
from webui.api import appliance, back, request_actor
from webui.apidoc import errors, ok
from webui.apidoc import page as page_doc  # "page" is this blueprint's view
from webui.auth import needs

bp = Blueprint("ops", __name__)


def _taken(result: dict) -> dict:
    """A backup's answer over HTTP: its name, size and manifest (no server path)."""
    return {"name": result["name"], "bytes": result["bytes"], "manifest": result["manifest"]}


@bp.post("/api/v1/backups")
@needs("backup.create")
def api_create():
    return jsonify(_taken(backups.take(appliance(), request_actor()))), 201


@bp.get("/api/v1/backups")
@needs("backup.create")
def api_list():
    return jsonify({"backups": backups.listing(appliance(), request_actor())})


@bp.get("/api/v1/backups/<name>")
@needs("backup.create")
def api_download(name: str):
    return _download(name)


def _download(name: str):
    require(request_actor(), "backup.create")
    path = backups.backup_path(appliance(), name)
    return send_file(path, mimetype="application/octet-stream", as_attachment=True,
                     download_name=path.name, max_age=0)  # fmt: skip


@bp.get("/operations")
@needs("backup.create")
def page():
    return render_template(
        "operations.html",
        backups=backups.listing(appliance(), request_actor()),
        home=appliance().home.name,
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
    )


@bp.post("/operations/backups")
@needs("backup.create")
def take():
    try:
        r = backups.take(appliance(), request_actor())
    except FalajError as exc:
        return back("ops.page", exc.message, ok=False)
    return back("ops.page", f"backup {r['name']} taken ({r['bytes']:,} bytes, audit head "
                f"{r['manifest']['audit_head']['seq']})", anchor="#backups")  # fmt: skip


@bp.get("/operations/backups/<name>")
@needs("backup.create")
def download(name: str):
    return _download(name)


# -- the OpenAPI document's part (merged in webui/openapi.py) ----------------------------

TAG = "Operations"
_NAME = {"name": "name", "in": "path", "required": True,
         "description": "A backup's file name in HOME/backups", "schema": {"type": "string"}}  # fmt: skip
_FILE = {"description": "The backup file (sealed and signed)",
         "content": {"application/octet-stream": {"schema": {"type": "string",
                                                             "format": "binary"}}}}  # fmt: skip


ERRORS = "Bad input or an unknown backup"


OPENAPI: dict = {
    "/api/v1/backups": {
        "post": {"summary": "Take a backup of the home: one encrypted, signed file (201)",
                 "tags": [TAG], "responses": {"201": ok("Its name, size and manifest"),
                                              **errors(ERRORS)}},
        "get": {"summary": "The backups in HOME/backups, newest first, signatures checked",
                "tags": [TAG], "responses": {"200": ok("Backups"), **errors(ERRORS)}}},
    "/api/v1/backups/{name}": {"get": {
        "summary": "Download a backup", "tags": [TAG], "parameters": [_NAME],
        "responses": {"200": _FILE, **errors(ERRORS)}}},
    "/operations": {"get": {
        "summary": "The Operations page (HTML): backups", "tags": [TAG],
        "responses": {"200": page_doc("The page"), **errors(ERRORS, html=True)}}},
    "/operations/backups": {"post": {
        "summary": "Take a backup (a dashboard form)", "tags": [TAG],
        "responses": {"302": {"description": "Back to the Operations page, with the outcome"},
                      **errors(ERRORS, html=True)}}},
    "/operations/backups/{name}": {"get": {
        "summary": "Download a backup (from the page)", "tags": [TAG], "parameters": [_NAME],
        "responses": {"200": _FILE, **errors(ERRORS, html=True)}}},
}  # fmt: skip
