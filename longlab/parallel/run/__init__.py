"""Running a method: `simulate` (ranks as threads, alpha-beta clock), `launch` (ranks as processes) and the
front end they share (`frontend.py`); `processes.py` starts and watches rank processes; `cli.py` is
`longlab parallel` and the torchrun entry (`python -m longlab.parallel.run`)."""
from .launch import launch
from .simulate import simulate

__all__ = ["simulate", "launch"]
