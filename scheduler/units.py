"""Human-readable rendering of wei prices and MiB sizes for reason texts."""

from decimal import Decimal

WEI_PER_ETH = 10**18
MIB_PER_GIB = 1024


def format_eth(wei: int) -> str:
    """Render a wei amount as a plain decimal ETH figure, e.g. ``0.012``."""
    value = (Decimal(wei) / Decimal(WEI_PER_ETH)).normalize()
    # normalize() turns 10 into 1E+1; "f" keeps the output free of exponents.
    return format(value, "f")


def format_price_per_hour(wei: int) -> str:
    """Render an hourly price, e.g. ``0.012 ETH/h``."""
    return f"{format_eth(wei)} ETH/h"


def format_mib(mib: int) -> str:
    """Render a size given in MiB, switching to GiB from 1 GiB up, e.g. ``80 GiB``."""
    if mib >= MIB_PER_GIB:
        gib = (Decimal(mib) / Decimal(MIB_PER_GIB)).quantize(Decimal("0.1")).normalize()
        return f"{format(gib, 'f')} GiB"
    return f"{mib} MiB"
