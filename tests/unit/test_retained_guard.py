"""What the bureau must hold on its retained topics, and when it writes them again."""

from bureau.authz.retained import RetainedGuard

TARIFF, MANIFEST, PAGE = "ev/v1/bureau/tariff", "ev/v1/bureau/authlist/manifest", "ev/v1/bureau/authlist/page/%d"


def test_nothing_is_judged_before_the_bureau_published():
    g = RetainedGuard()
    assert not g.seen(TARIFF, b"left by an earlier run") and not g.seen(PAGE % 3, b"x")
    assert g.due(0.0) == []


def test_changed_erased_and_planted_topics_are_written_again_pages_before_manifest():
    g = RetainedGuard()
    g.published(MANIFEST, b"m1")  # an earlier list's manifest, published again below
    g.published(PAGE % 0, b"p0")
    g.published(MANIFEST, b"m2")
    g.published(TARIFF, b"t")
    g.own_family("ev/v1/bureau/authlist/")
    assert not g.seen(PAGE % 0, b"p0") and not g.seen(TARIFF, b"t")  # our own echoes
    assert g.seen(MANIFEST, b"forged") and g.seen(PAGE % 0, b"") and g.seen(TARIFF, b"")
    assert g.seen(PAGE % 9, b"planted") and not g.seen(PAGE % 8, b"")
    assert g.due(10.0) == [(PAGE % 9, b""), (PAGE % 0, b"p0"), (MANIFEST, b"m2"), (TARIFF, b"t")]
    assert g.due(10.0) == [] and not g.waiting


def test_at_most_one_restore_per_interval_and_a_late_echo_cancels_it():
    g = RetainedGuard(min_interval_s=1.0)
    g.published(TARIFF, b"t")
    g.seen(TARIFF, b"forged")
    assert g.due(5.0) == [(TARIFF, b"t")]
    g.seen(TARIFF, b"forged again")
    assert g.due(5.5) == [] and g.waiting  # too soon: waits
    assert g.due(6.0) == [(TARIFF, b"t")]
    g.seen(TARIFF, b"forged")
    g.seen(TARIFF, b"t")  # the right one arrived after all (an echo of our own publish)
    assert g.due(9.0) == [] and not g.waiting


def test_a_new_publish_replaces_what_must_be_held():
    g = RetainedGuard()
    g.published(TARIFF, b"v1")
    assert g.seen(TARIFF, b"v2")  # not ours yet
    g.published(TARIFF, b"v2")
    assert not g.waiting and not g.seen(TARIFF, b"v2")
