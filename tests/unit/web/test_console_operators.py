"""/console/operators: an admin lists and adds operators, issues tokens shown once, disables; others 403; CSRF."""

import re

import pytest
from sqlalchemy import select

from receiver.access.credentials import Passwords
from receiver.access.roles import Role
from receiver.ledger.models import Operator, OperatorToken
from receiver.ledger.operators import add_operator
from tests.unit.web.test_console import HTTPS, PASSWORD, console_app, csrf_of, sign_in


@pytest.fixture
def app(tmp_path, database_url, settings):
    yield from console_app(tmp_path, database_url)


def operator_rows(app) -> list[str]:
    with app.extensions["receiver"].engine.connect() as conn:
        return sorted(conn.execute(select(Operator.email)).scalars())


def as_admin(app):
    add_operator(app.extensions["receiver"].engine, "boss@grand.example", Role.ADMIN, None, Passwords().hash(PASSWORD),
                 by="tests")
    client = app.test_client()
    sign_in(client, email="boss@grand.example")
    return client, csrf_of(client.get("/console/operators", **HTTPS).text)


NEW = {"email": "New@Grand.example", "role": "viewer", "tenants": ["grand"], "password": "a long new password here"}


def test_an_admin_adds_an_operator_who_then_signs_in(app):
    client, csrf = as_admin(app)
    listed = client.get("/console/operators", **HTTPS)
    assert "desk@grand.example" in listed.text and "$argon2" not in listed.text
    assert 'href="/console/operators"' in listed.text  # the admin's menu links to it
    added = client.post("/console/operators", data={**NEW, "csrf": csrf}, **HTTPS)
    assert added.status_code == 200 and 'id="added"' in added.text and "new@grand.example" in added.text
    assert "$argon2" not in added.text
    again = client.post("/console/operators", data={**NEW, "csrf": csrf}, **HTTPS)
    assert again.status_code == 409
    newcomer = app.test_client()
    assert sign_in(newcomer, email="new@grand.example", password=NEW["password"]).status_code == 302
    home = newcomer.get("/console", **HTTPS)
    assert home.status_code == 200 and 'href="/console/operators"' not in home.text  # no admin link for a viewer


def test_a_token_is_shown_once_and_works_then_disabling_stops_it_and_the_session(app):
    client, csrf = as_admin(app)
    desk = app.test_client()
    sign_in(desk)
    assert desk.get("/console", **HTTPS).status_code == 200
    issued = client.post("/console/operators/token", data={"csrf": csrf, "email": "desk@grand.example"}, **HTTPS)
    assert issued.status_code == 200 and issued.headers["Cache-Control"] == "no-store"
    token = re.search(r'<code id="token">(rcv_[^<]+)</code>', issued.text)[1]
    assert token not in client.get("/console/operators", **HTTPS).text  # never shown again
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/deliveries", query_string={"tenant": "grand"}, headers=bearer).status_code == 200
    disabled = client.post("/console/operators/disable", data={"csrf": csrf, "email": "desk@grand.example"},
                           **HTTPS)
    assert disabled.status_code == 200 and 'id="disabled"' in disabled.text
    assert client.get("/v1/deliveries", query_string={"tenant": "grand"}, headers=bearer).status_code == 401
    assert desk.get("/console", **HTTPS).status_code == 302  # signed out at its next request
    assert client.post("/console/operators/token", data={"csrf": csrf, "email": "desk@grand.example"},
                       **HTTPS).status_code == 404
    assert client.post("/console/operators/disable", data={"csrf": csrf, "email": "no@grand.example"},
                       **HTTPS).status_code == 404


@pytest.mark.parametrize("email", ["look@grand.example", "desk@grand.example"])
def test_a_viewer_or_agent_may_not_manage_operators(app, email):
    client = app.test_client()
    sign_in(client, email=email)
    page = client.get("/console/operators", **HTTPS)
    assert page.status_code == 403 and "look@grand.example" not in page.text.split("</nav>")[1]
    csrf = csrf_of(page.text)
    assert client.post("/console/operators", data={**NEW, "csrf": csrf}, **HTTPS).status_code == 403
    assert client.post("/console/operators/token", data={"csrf": csrf, "email": email}, **HTTPS).status_code == 403
    assert client.post("/console/operators/disable", data={"csrf": csrf, "email": "look@grand.example"},
                       **HTTPS).status_code == 403
    assert "new@grand.example" not in operator_rows(app)
    assert sign_in(app.test_client(), email="look@grand.example").status_code == 302  # still enabled


def test_operator_forms_need_csrf_and_a_get_changes_nothing(app):
    client, _csrf = as_admin(app)
    assert client.post("/console/operators", data=NEW, **HTTPS).status_code == 400
    assert client.post("/console/operators", data={**NEW, "csrf": "forged"}, **HTTPS).status_code == 400
    assert client.post("/console/operators/disable", data={"email": "desk@grand.example"}, **HTTPS).status_code == 400
    assert client.get("/console/operators/disable", query_string={"email": "desk@grand.example"},
                      **HTTPS).status_code == 405
    assert "new@grand.example" not in operator_rows(app)
    assert sign_in(app.test_client()).status_code == 302  # desk is still enabled


@pytest.mark.parametrize(("change", "field"), [
    ({"role": "owner"}, "role"), ({"tenants": ["nowhere"]}, "tenants"), ({"tenants": []}, "tenants"),
    ({"role": "admin"}, "tenants"), ({"password": "too short"}, "password"), ({"email": "not-an-email"}, "email")])
def test_bad_input_names_the_field_and_stores_nothing(app, change, field):
    client, csrf = as_admin(app)
    before = operator_rows(app)
    bad = client.post("/console/operators", data={**NEW, **change, "csrf": csrf}, **HTTPS)
    assert bad.status_code == 400 and f"{field}: " in bad.text and 'id="email"' in bad.text
    assert operator_rows(app) == before


def test_the_operators_page_speaks_french(app):
    client, _csrf = as_admin(app)
    french = client.get("/console/operators?lang=fr", **HTTPS).text
    assert "Opérateurs" in french and "Ajouter un opérateur" in french and "Émettre un jeton d’API" in french


def test_each_change_names_the_admin_who_made_it(app):
    """Issue 14: every write an operator makes carries their identity into the audit trail; the Operators
    page shows who added each operator, issued its newest token and disabled it."""
    client, csrf = as_admin(app)
    assert client.post("/console/operators", data={**NEW, "csrf": csrf}, **HTTPS).status_code == 200
    assert client.post("/console/operators/token", data={"csrf": csrf, "email": "new@grand.example"},
                       **HTTPS).status_code == 200
    assert client.post("/console/operators/disable", data={"csrf": csrf, "email": "new@grand.example"},
                       **HTTPS).status_code == 200
    assert client.post("/console/operators/disable", data={"csrf": csrf, "email": "new@grand.example"},
                       **HTTPS).status_code == 200  # again: the first time and actor stay
    engine = app.extensions["receiver"].engine
    with engine.connect() as conn:
        row = conn.execute(select(Operator.__table__).where(Operator.email == "new@grand.example")).one()
        issued_by = conn.execute(select(OperatorToken.issued_by).where(OperatorToken.operator_id == row.id)).scalars()
        assert issued_by.all() == ["boss@grand.example"]
    assert (row.created_by, row.disabled_by) == ("boss@grand.example", "boss@grand.example")
    page = client.get("/console/operators", **HTTPS).text
    new_row = next(tr for tr in page.split("<tr>") if '<td class="email">new@grand.example<' in tr)
    shown = " ".join(new_row.split('<td class="email">')[1].split("</td>")[0].split())
    assert "by boss@grand.example" in shown.split("<br>")[1]  # added … by
    assert "<br>newest token by boss@grand.example" in shown and "<br>disabled by boss@grand.example" in shown
    desk_row = next(tr for tr in page.split("<tr>") if '<td class="email">desk@grand.example<' in tr)
    assert "by tests" in desk_row and "boss@grand.example" not in desk_row  # added by the fixture, never touched
    assert "par boss@grand.example" in client.get("/console/operators?lang=fr", **HTTPS).text
