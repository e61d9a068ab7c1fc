"""Lightning's start-up chatter kept out of NETWORKVI's own calls, for their duration only.

Lightning logs at INFO on every ``Trainer``: "GPU available: ...", "TPU available: ...", "HPU available: ..." (older
releases), "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: ...", a "💡 Tip" advertising a package, "`Trainer.fit` stopped:
`max_epochs=N` reached", and "Seed set to N" whenever ``scvi.settings.seed`` is set. Lightning sets its own loggers
(``lightning``, ``lightning.pytorch``, ``lightning.fabric``) to INFO at import, so these lines appear unless silenced.

:func:`quiet_lightning` raises the few loggers that emit them to WARNING while one of our calls runs and restores them
afterwards; a logger the user has given a level keeps it. To see the lines, give the emitting logger a level
(``logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.INFO)``) or set Lightning's loggers to
DEBUG. Warnings are filtered by their exact message only, and only inside the block.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

#: The loggers that print Lightning's start-up lines; nothing else of Lightning's logging is touched.
CHATTER_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",  # GPU / TPU / HPU available, the tip, "Trainer.fit stopped"
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",  # "Seed set to N"
    "lightning.pytorch.accelerators.cuda",  # "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]"
)

#: Warnings our training triggers inside Lightning that ask nothing of the user (regular expressions of the messages).
TRAINING_WARNINGS = (
    # torch >= 2.10 deprecates the LeafSpec check Lightning's own pytree helper makes on every step
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # advice about per-step logging; the training plan logs per epoch
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)

#: With a query model: scvi-tools' query mapping trains it in eval mode on purpose (frozen normalisation statistics).
QUERY_WARNINGS = (r"Found \d+ module\(s\) in eval mode at the start of training",)


@contextlib.contextmanager
def quiet_lightning(messages: tuple[str, ...] = ()) -> Iterator[None]:
    """Silence Lightning's start-up lines and the warnings matching ``messages`` inside the block; restore after.

    A chatter logger is raised to WARNING only if it has no level of its own and its effective level is not below
    INFO (Lightning's default): a user who set the logger, or Lightning's loggers to DEBUG, sees the lines.
    """
    raised = []
    for name in CHATTER_LOGGERS:
        log = logging.getLogger(name)
        if log.level == logging.NOTSET and log.getEffectiveLevel() >= logging.INFO:
            log.setLevel(logging.WARNING)
            raised.append(log)
    try:
        with warnings.catch_warnings():
            for message in messages:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for log in raised:
            if log.level == logging.WARNING:  # unless changed inside the block
                log.setLevel(logging.NOTSET)
