"""What a producer's source hands to the Kafka sink besides single records."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MessageBlock:
    """Ready-to-publish Kafka messages (key, value), many per Bytewax item: the synthetic trade generator
    serialises thousands of trades a second, one Bytewax item per trade would cost more than the trades."""

    keys: list[bytes]
    values: list[bytes]

    def __len__(self) -> int:
        return len(self.values)
