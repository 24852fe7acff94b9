"""The opt-out receiver: create_app() is the Flask app factory."""

from flask import Flask

from .settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    from .logs import configure_logging
    from .services import Services
    from .sources.base import MAX_BODY
    from .web import register_blueprints, register_errorhandlers

    settings = settings or load_settings()
    configure_logging(settings.log_level)
    app = Flask(__name__, instance_path=str(settings.instance_path), instance_relative_config=True)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY)
    app.json.sort_keys = False
    app.extensions["receiver"] = Services.build(settings)
    register_blueprints(app)
    register_errorhandlers(app)
    return app
