from pipeline.domain.builds import Build, normalise


def test_long_and_short_forms_are_the_same_build():
    assert Build.parse("15.01.2507.039") == Build.parse("15.1.2507.39")
    assert normalise("15.01.2507.039") == "15.1.2507.39"
    assert normalise("15.00.1497.002") == "15.0.1497.2"


def test_builds_order_numerically_not_textually():
    assert Build.parse("15.1.2507.9") < Build.parse("15.1.2507.61")
    assert Build.parse("15.2.999.1") < Build.parse("15.2.1748.39")


def test_cloud_builds():
    assert Build.parse("15.20.7202.31").is_cloud
    assert Build.parse("15.20.7202.031").is_cloud
    assert not Build.parse("15.2.1544.14").is_cloud
    assert not Build.parse("14.3.513.0").is_cloud


def test_not_a_build():
    for text in (None, "", "Exim 4.96", "15", "15.1.x.3", "1.2.3.4.5"):
        assert Build.parse(text) is None
