"""Per-site isolation on the API, tokens, deposit accounts (seed 001 « Comptes d'accès »)."""

from __future__ import annotations

from tests.harness import sample_xml
from tests.integration.conftest import Stack


def test_cross_site_access_is_404(sqlite_stack: Stack) -> None:
    api = sqlite_stack.api
    api.create_site("A", {"a1": "0490856P"})
    api.create_site("B", {"b1": "0490857R"})
    token_a = api.site_token("A")
    b_import = api.wait(api.upload("B", "b1", sample_xml("0490857R")))["id"]
    assert api.call("GET", "/sites/A/imports", token_a).status_code == 200
    for method, path in [("GET", "/sites/B"), ("GET", "/sites/B/imports"), ("GET", f"/imports/{b_import}"),
                         ("GET", f"/imports/{b_import}/source"), ("GET", "/sites/B/accounts"),
                         ("POST", f"/imports/{b_import}/cancel")]:
        r = api.call(method, path, token_a)
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.headers["content-type"] == "application/problem+json"
    upload = api.call("POST", "/sites/B/establishments/b1/imports", token_a,
                      files={"file": ("x.xml", b"<x/>", "application/xml")})
    assert upload.status_code == 404
    assert api.call("POST", "/sites", token_a, json={"id": "C", "name": "C"}).status_code == 403
    assert api.call("GET", "/sites/A", "not-a-token").status_code == 401
    forged = token_a.replace(".A", ".B") if ".A" in token_a else token_a[:-2] + "xx"
    assert api.call("GET", "/sites/B", forged).status_code in (401, 404)


def test_deposit_account_refused_before_first_import(sqlite_stack: Stack) -> None:
    api = sqlite_stack.api
    api.create_site("4817", {"1754": "0490856P"})
    r = api.call("POST", "/sites/4817/accounts", json={"first_name": "Thibault", "last_name": "Bourgeois"})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert "premier import" in r.json()["detail"]


def test_five_deposit_accounts_per_site_with_generated_logins(sqlite_stack: Stack) -> None:
    api = sqlite_stack.api
    api.create_site("4817", {"1754": "0490856P", "4817": "0490857R"})
    api.first_import("4817", "1754", sample_xml("0490856P"))
    token = api.site_token("4817")
    first = api.create_account("4817", "Thibault", "Bourgeois", token=token)
    assert first["login"] == "emp.thibault.bourgeois"
    assert len(first["password"]) == 10 and first["password"].isalnum()
    assert [u["url"] for u in first["urls"]] == [f"{sqlite_stack.settings.public_url}/webdav/4817/",
                                                 f"{sqlite_stack.settings.public_url}/webdav/4817/1754/",
                                                 f"{sqlite_stack.settings.public_url}/webdav/4817/4817/"]
    assert first["urls"][0]["label"] == "Tous les établissements"
    second = api.create_account("4817", "Thibault", "Bourgeois", token=token)
    assert second["login"] == "emp.thibault.bourgeois2"
    accented = api.create_account("4817", "Jean Philippe", "Lévêque", token=token)
    assert accented["login"] == "emp.jean-philippe.leveque"
    for name in ("Franck", "Philippe"):
        api.create_account("4817", name, "Gillet", token=token)
    sixth = api.call("POST", "/sites/4817/accounts", token, json={"first_name": "Six", "last_name": "Th"})
    assert sixth.status_code == 409 and "5" in sixth.json()["detail"]
    listed = api.ok("GET", "/sites/4817/accounts", token)["items"]
    assert len(listed) == 5 and all("password" not in a and "password_hash" not in a for a in listed)
    regenerated = api.ok("POST", "/sites/4817/accounts/emp.thibault.bourgeois/password", token)
    assert regenerated["password"] != first["password"] and len(regenerated["password"]) == 10
    patched = api.ok("PATCH", "/sites/4817/accounts/emp.thibault.bourgeois", token, json={"notify": False})
    assert patched["notify"] is False
    assert api.call("DELETE", "/sites/4817/accounts/emp.thibault.bourgeois2", token).status_code == 204
    assert api.call("DELETE", "/sites/4817/accounts/emp.thibault.bourgeois2", token).status_code == 404
    assert api.create_account("4817", "Six", "Th", token=token)["login"] == "emp.six.th"


def test_api_validation_errors_are_problem_json(sqlite_stack: Stack) -> None:
    api = sqlite_stack.api
    r = api.call("POST", "/sites", json={"id": "bad id!", "name": ""})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "validation_error"
    api.create_site("4817", {"1754": "0490856P"})
    assert api.call("POST", "/sites", json={"id": "4817", "name": "x"}).status_code == 409
    assert api.call("PUT", "/sites/4817/establishments/x", json={"uai": "nope", "name": "x"}).status_code == 422
    clash = api.call("PUT", "/sites/4817/establishments/x", json={"uai": "0490856P", "name": "x"})
    assert clash.status_code == 409


def test_same_name_created_at_once_on_several_sites_gets_distinct_logins(stack: Stack) -> None:
    """Logins are unique across sites: concurrent creations of one name each get their own number."""
    from concurrent.futures import ThreadPoolExecutor

    api = stack.api
    sites = [f"S{i}" for i in range(4)]
    for i, site in enumerate(sites):
        api.create_site(site, {f"e{i}": f"049085{i}P"})
        api.first_import(site, f"e{i}", sample_xml(f"049085{i}P"))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda s: api.call("POST", f"/sites/{s}/accounts",
                                                   json={"first_name": "Thibault", "last_name": "Bourgeois"}),
                                sites + sites))
    assert [r.status_code for r in answers] == [201] * 8, [r.text for r in answers if r.status_code != 201]
    logins = sorted(r.json()["login"] for r in answers)
    assert logins == sorted(["emp.thibault.bourgeois"] + [f"emp.thibault.bourgeois{n}" for n in range(2, 9)])
