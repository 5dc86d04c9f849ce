"""The shared argument checks accept what they promise and name the argument when they refuse."""
import pytest

from longlab.checks import int_at_least, positive_int, positive_number


@pytest.mark.parametrize("bad", [0, -3, 1.0, True, "2", None])
def test_positive_int_refuses_with_the_name(bad):
    with pytest.raises(ValueError, match="heads must be a positive int"):
        positive_int("heads", bad)


def test_positive_int_and_at_least_accept():
    assert positive_int("n", 7) == 7
    assert int_at_least("val_every", 2, 2) == 2
    with pytest.raises(ValueError, match=r"val_every must be an int >= 2 \(files\), got 1"):
        int_at_least("val_every", 1, 2, unit="files")


@pytest.mark.parametrize("bad", [0, -1.5, float("inf"), float("nan"), True, "1"])
def test_positive_number_refuses(bad):
    with pytest.raises(ValueError, match="timeout must be a positive finite number"):
        positive_number("timeout", bad)


def test_positive_number_accepts():
    assert positive_number("timeout", 3) == 3.0
