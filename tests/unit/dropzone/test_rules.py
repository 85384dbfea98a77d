"""Dropzone rules (seed 001 « Comptes d'accès », deposits, routing), one test per rule."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta

from services.dropzone.domain import (
    CallerFailures,
    DepositNotListed,
    LoginCache,
    LoginState,
    account_creation_refusal,
    failure_delay,
    generate_password,
    history_missed,
    is_deposit_candidate,
    is_disk_full,
    is_locked,
    make_login,
    route_deposit,
    should_lock,
)

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
SITE = {"1754": "0490856P", "4817": "0490857R"}


def test_login_is_emp_first_last_ascii_folded() -> None:
    assert make_login("Thibault", "Bourgeois", set()) == "emp.thibault.bourgeois"
    assert make_login("Jean Philippe", "Lévêque", set()) == "emp.jean-philippe.leveque"
    assert make_login("Anne-Sophie", "D'Hérouville", set()) == "emp.anne-sophie.d-herouville"


def test_login_is_deduplicated() -> None:
    taken = {"emp.franck.gillet", "emp.franck.gillet2"}
    assert make_login("Franck", "Gillet", taken) == "emp.franck.gillet3"


def test_password_is_ten_letters_and_digits() -> None:
    for _ in range(50):
        pw = generate_password()
        assert len(pw) == 10 and pw.isalnum() and pw.isascii()
        assert any(c.isdigit() for c in pw) and any(c.isupper() for c in pw) and any(c.islower() for c in pw)


def test_accounts_only_after_the_first_import() -> None:
    refusal = account_creation_refusal(0, None)
    assert refusal is not None and "premier import" in refusal[0]
    assert account_creation_refusal(0, NOW) is None


def test_at_most_five_accounts_per_site() -> None:
    assert account_creation_refusal(4, NOW) is None
    refusal = account_creation_refusal(5, NOW)
    assert refusal is not None and "5" in refusal[0]


def test_failed_logins_lock_the_account() -> None:
    assert [should_lock(n, 5) for n in range(1, 7)] == [False, False, False, False, True, True]
    state = LoginState(5, NOW + timedelta(minutes=15))
    assert is_locked(state, NOW) and not is_locked(state, NOW + timedelta(minutes=16))


def test_the_slow_down_counts_the_callers_failures_not_the_accounts() -> None:
    failures = CallerFailures(window_s=60)
    assert [failures.add("10.0.0.1", t) for t in (0, 1, 2)] == [1, 2, 3]
    assert failures.add("10.0.0.2", 3) == 1  # another caller starts afresh, whatever login it names
    assert failures.add("10.0.0.1", 70) == 1  # a minute without failure: the count starts again


def test_failed_logins_are_slowed_down() -> None:
    delays = [failure_delay(n) for n in range(1, 8)]
    assert delays == sorted(delays) and delays[0] > 0 and max(delays) <= 3.0


def test_empty_files_and_temporary_names_are_not_deposits() -> None:
    assert is_deposit_candidate("EDT_To_KOSMOS_0490856P.xml", 10)
    assert is_deposit_candidate("EDT_2014_1406127300106.zip", 10)
    assert not is_deposit_candidate("EDT_To_KOSMOS_0490856P.xml", 0)
    for name in ("~$EDT.xml", "EDT.xml.tmp", "X.TMP", ".~lock.EDT.xml#", "._EDT.xml"):
        assert not is_deposit_candidate(name, 10), name


def test_establishment_url_keeps_its_establishment() -> None:
    route = route_deposit("1754", "0490857R", [], SITE)
    assert route.establishment == "1754" and route.error is None


def test_site_url_routes_by_the_file_uai() -> None:
    assert route_deposit(None, "0490857r", [], SITE).establishment == "4817"
    unknown = route_deposit(None, "0999999Z", [], SITE)
    assert unknown.error is not None and "0999999Z" in unknown.error[0]


def test_site_url_file_listing_several_establishments_is_site_wide() -> None:
    route = route_deposit(None, "0490856P", ["0490856P", "0490857R"], SITE)
    assert route.establishment is None and route.error is None
    assert route.establishments == {"1754": "0490856P", "4817": "0490857R"}
    bad = route_deposit(None, "0490856P", ["0490856P", "0111111A"], SITE)
    assert bad.error is not None and "0111111A" in bad.error[0]


def test_site_url_without_uai() -> None:
    assert route_deposit(None, None, [], {"1754": "0490856P"}).establishment == "1754"
    assert route_deposit(None, None, [], SITE).error is not None


def test_site_url_encrypted_file_is_site_wide_when_the_site_has_several_establishments() -> None:
    route = route_deposit(None, "0490856P", [], SITE, encrypted=True)
    assert route.establishment is None and route.establishments == SITE
    single = route_deposit(None, "0490856P", [], {"1754": "0490856P"}, encrypted=True)
    assert single.establishment == "1754"


def test_login_cache_remembers_successes_until_the_password_changes() -> None:
    cache = LoginCache(ttl_s=60)
    key = cache.key("emp.a.b", "$argon2$old", "secret")
    assert not cache.hit(key, now=0.0)
    cache.remember(key, now=0.0)
    assert cache.hit(key, now=59.0)
    assert not cache.hit(key, now=60.0)  # expired
    # Keyed on the stored hash: a regenerated password (new hash) or another password is never a hit.
    assert not cache.hit(cache.key("emp.a.b", "$argon2$new", "secret"), now=1.0)
    assert not cache.hit(cache.key("emp.a.b", "$argon2$old", "other"), now=1.0)


def test_is_disk_full_sees_a_full_volume_or_a_quota_however_wrapped() -> None:
    from wsgidav.dav_error import DAVError

    full = OSError(errno.ENOSPC, "No space left on device")
    assert is_disk_full(full) and is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(DAVError(500, src_exception=full))  # WsgiDAV's PUT wraps the spool's error
    try:
        try:
            raise full
        except OSError as inner:
            raise RuntimeError("sealing failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("x")) and not is_disk_full(None)


def test_an_id_is_handed_out_only_once_the_history_recorded_the_deposit() -> None:
    assert not history_missed(set())
    assert not history_missed({"thresholds"})  # its settings lock late: the import is readable all the same
    assert history_missed({"notifier"}) and history_missed({"notifier", "thresholds"})
    refusal = DepositNotListed("abc")
    assert refusal.import_id == "abc" and "déposer à nouveau" in refusal.fr and "deposit it again" in refusal.en
