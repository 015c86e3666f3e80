"""`taskengine serve`: the HTTP API and the worker pool in one process."""

from __future__ import annotations

import click

from taskengine.cli.errors import EXIT_OK
from taskengine.cli.loading import load_app, run, state_of
from taskengine.cli.pool_options import PoolOptions, log_level_option, pool_options
from taskengine.cli.worker_cmd import configure_logging


@click.command()
@click.option(
    "--host", help="Address to listen on ($TASKENGINE_API_HOST, 127.0.0.1; others need a token)."
)
@click.option("--port", type=click.IntRange(0, 65535), help="Port ($TASKENGINE_API_PORT, 8080).")
@pool_options
@click.option("--no-workers", is_flag=True, help="Serve the API only; run workers elsewhere.")
@log_level_option
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    pool: PoolOptions,
    no_workers: bool,
    log_level: str | None,
) -> None:
    """Serve the REST API and a worker pool until SIGINT/SIGTERM (see TASKENGINE_API_TOKENS)."""
    from taskengine.api.auth import Tokens
    from taskengine.api.server import serve as serve_api

    pool.check()
    app = load_app(state_of(ctx))
    changes = pool.changes(app.settings)
    if changes:
        app.settings = app.settings.with_changes(**changes)
    settings = app.settings
    configure_logging(log_level or settings.log_level)
    tokens = Tokens.parse(settings.api_tokens)
    code = run(
        serve_api(
            app,
            host=host or settings.api_host,
            port=settings.api_port if port is None else port,
            tokens=tokens,
            allowed_hosts=settings.api_allowed_hosts,
            run_workers=not no_workers,
        )
    )
    raise click.exceptions.Exit(code or EXIT_OK)
