"""The interface filter: the seed's own test cases exactly, then the parsing of the settings."""
import pytest

from flowcollect.interfaces.filter import InterfaceFilter
from flowcollect.settings.errors import ConfigError
from flowcollect.settings.interface_lists import parse_interface_list, split_interface_list


def verdicts(flt, names):
    return {name: flt.allowed(name) for name in names}


def test_case_9_empty_allow_list_means_every_interface_but_the_excluded():
    flt = InterfaceFilter(allow=[], exclude=["lo"])
    assert verdicts(flt, ["eth0", "br-0", "lo"]) == {"eth0": True, "br-0": True, "lo": False}


def test_case_9_exact_names_and_regexes_with_search_semantics():
    flt = InterfaceFilter(allow=["eth0", "/^br-/"], exclude=["lo"])
    assert verdicts(flt, ["eth0", "br-0", "eth01", "abr-3", "lo"]) == {
        "eth0": True, "br-0": True, "eth01": False, "abr-3": False, "lo": False}


def test_case_9_exclusion_wins_over_the_allow_list():
    flt = InterfaceFilter(allow=["/^eth/", "/^br-/"], exclude=["eth1", "/^br-1/"])
    yes = ["eth0", "eth10", "eth11", "br-2", "br-0"]
    no = ["eth1", "br-1", "br-10"]
    assert verdicts(flt, yes + no) == {**dict.fromkeys(yes, True), **dict.fromkeys(no, False)}


def test_lo_is_excluded_by_default():
    flt = InterfaceFilter()
    assert verdicts(flt, ["lo", "eth0", "lo0"]) == {"lo": False, "eth0": True, "lo0": True}


def test_cli_form_gives_the_same_filter_as_the_list_form():
    flt = InterfaceFilter("eth0, /^br-/", "lo,/^veth/")
    assert verdicts(flt, ["eth0", "br-0", "abr-3", "eth01", "lo", "vethab"]) == {
        "eth0": True, "br-0": True, "abr-3": False, "eth01": False, "lo": False, "vethab": False}


def test_empty_cli_string_is_the_empty_list():
    assert parse_interface_list("") == []
    assert InterfaceFilter("", "").allowed("lo")


def test_a_comma_inside_a_regex_belongs_to_the_regex():
    assert split_interface_list("/^(eth|br){1,2}$/,eth0 ,, /a/b/") == ["/^(eth|br){1,2}$/", "eth0", "/a/b/"]
    flt = InterfaceFilter("/^(eth|br){1,2}$/")
    assert verdicts(flt, ["ethbr", "br", "eth0"]) == {"ethbr": True, "br": True, "eth0": False}


@pytest.mark.parametrize("value, setting, says", [
    ("eth0,/[/", "interfaces", "bad regex '/[/'"),
    ("/(unclosed/", "exclude_interfaces", "bad regex"),
    ("/^br-", "interfaces", "is not a /regex/"),
    ("//", "interfaces", "is not a /regex/"),
    ("a-name-far-too-long", "interfaces", "is not an interface name"),
    ("eth 0", "exclude_interfaces", "is not an interface name"),
])
def test_bad_entries_are_one_line_config_errors_naming_the_setting(value, setting, says):
    allow, exclude = (value, ()) if setting == "interfaces" else ((), value)
    with pytest.raises(ConfigError) as caught:
        InterfaceFilter(allow, exclude)
    message = str(caught.value)
    assert message.startswith(f"{setting}: ") and says in message and "\n" not in message
    assert caught.value.exit_code == 2
