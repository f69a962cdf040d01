"""One identity rule: each purpose compares its fields, names the field and both values, and ignores the engine."""

from __future__ import annotations

import dataclasses

import pytest

from robodyna.identity import RULES, Identity, IdentityMismatch, check_identity, identity_problems
from robodyna.robots import load_robot_config, robot_folder
from robodyna.spec import RobotSpec


@pytest.fixture(scope="module")
def spec() -> RobotSpec:
    cfg, _ = load_robot_config(robot_folder("reacher2"))
    return RobotSpec.from_config(cfg, "mujoco")


OBS = ["a", "b", "c"]


@pytest.mark.parametrize("purpose", sorted(RULES))
def test_the_same_robot_in_another_engine_is_accepted_for_every_purpose(spec: RobotSpec, purpose: str) -> None:
    other_engine = dataclasses.replace(spec, engine="pybullet", physics_hz=spec.physics_hz * 2)
    check_identity(purpose, Identity.of(other_engine, OBS, OBS), Identity.of(spec, OBS, OBS), "x")


@pytest.mark.parametrize("purpose", sorted(RULES))
@pytest.mark.parametrize("field,value", [("name", "other"), ("control_hz", 25.0), ("action_high", (9.0, 9.0)),
                                         ("action_names", ("x", "y")), ("joint_high_rad", (0.1, 0.1))])
def test_a_changed_field_is_refused_by_exactly_the_purposes_whose_rule_lists_it(
        spec: RobotSpec, purpose: str, field: str, value: object) -> None:
    changed = dataclasses.replace(spec, **{field: value})
    theirs, ours = Identity.of(changed, OBS, OBS), Identity.of(spec, OBS, OBS)
    if field in RULES[purpose]:
        with pytest.raises(IdentityMismatch, match=rf"x: made for another robot \({purpose}\): {field} is ") as err:
            check_identity(purpose, theirs, ours, "x")
        assert err.value.field == field and err.value.purpose == purpose
    else:
        check_identity(purpose, theirs, ours, "x")


def test_the_rules_say_which_purposes_compare_joint_limits_and_obs_layout() -> None:
    assert "joint_high_rad" not in RULES["policy"] and "joint_high_rad" in RULES["checkpoint"]
    assert "obs_names" in RULES["policy"] and "obs_names" not in RULES["replay"]
    assert all("engine" not in r and "physics_hz" not in r for r in RULES.values())
    interface = {"name", "action_mode", "action_names", "action_units", "action_low", "action_high", "control_hz"}
    assert all(interface <= set(r) for r in RULES.values())


def test_a_mismatch_names_the_field_and_both_values(spec: RobotSpec) -> None:
    theirs = Identity.of(spec, ["q0", "q1"])
    with pytest.raises(IdentityMismatch) as err:
        check_identity("policy", theirs, Identity.of(spec, ["q0", "target"]), "policy.onnx")
    assert str(err.value) == ("policy.onnx: made for another robot (policy): obs_names is ['q0', 'q1'] there, "
                              "['q0', 'target'] here")


def test_a_field_the_artefact_lacks_is_a_mismatch_and_one_the_caller_lacks_is_not_checked(spec: RobotSpec) -> None:
    assert identity_problems("policy", Identity.of(spec), Identity.of(spec, OBS)) == [("obs_names", None, OBS)]
    assert identity_problems("policy", Identity.of(spec, OBS), Identity.of(spec)) == []


def test_an_unknown_purpose_is_an_error(spec: RobotSpec) -> None:
    with pytest.raises(ValueError, match="unknown identity purpose 'polcy'"):
        check_identity("polcy", Identity.of(spec), Identity.of(spec), "x")


def test_a_checkpoint_trained_under_cross_engine_and_its_onnx_are_judged_alike(spec: RobotSpec) -> None:
    pybullet = dataclasses.replace(spec, engine="pybullet")
    for purpose in ("policy", "checkpoint"):
        check_identity(purpose, Identity.of(pybullet, OBS), Identity.of(spec, OBS), "x")
