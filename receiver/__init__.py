"""The opt-out receiver: create_app() is the Flask app factory."""

from pathlib import Path

from flask import Flask

from .settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    from .logs import configure_logging
    from .services import Services
    from .sources import configure
    from .sources.base import MAX_BODY
    from .web import register_blueprints, register_errorhandlers

    settings = settings or configure(load_settings())
    configure_logging(settings.log_level)
    app = Flask(__name__, template_folder="web/templates", instance_path=str(settings.instance_path), instance_relative_config=True)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY)  # what any body may be; web/bodies.py sets each POST's own cap
    app.extensions["receiver"] = Services.build(settings)
    if settings.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # The client address is what the host's router appended to X-Forwarded-For, not what a client claims.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)
    from flask_babel import Babel

    from .web.answers import select_locale

    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(Path(__file__).parent / "translations")
    Babel(app, locale_selector=select_locale)
    register_blueprints(app)
    register_errorhandlers(app)
    return app
