"""The link between onboard controllers and the off-board trainer (ZeroMQ, CURVE, exactly-once; see
``docs/protocol.md``): :class:`TrainerServer` on the trainer, :class:`RobotLink` on each robot."""

from __future__ import annotations

from robodyna.transport.keys import RobotKeys, TrainerKeys, generate_keys
from robodyna.transport.protocol import PROTOCOL_VERSION, ProtocolError
from robodyna.transport.robot import LinkConfig, RobotLink, RobotLinkProcess
from robodyna.transport.trainer import TrainerConfig, TrainerServer

__all__ = ["PROTOCOL_VERSION", "LinkConfig", "ProtocolError", "RobotKeys", "RobotLink", "RobotLinkProcess",
           "TrainerConfig", "TrainerKeys", "TrainerServer", "generate_keys"]
