"""Semantic joint mapping for every corpus family, Mixamo, the generic scheme and unknown skeletons."""

from __future__ import annotations

import pytest

from hipart.data.joint_mapping import REQUIRED, UnknownSkeletonError, map_joints
from tests.data.conftest import humanoid

EXPECT = {
    "cgspeed-mb": ("cgspeed-mb", {"l_shoulder": "LeftArm", "l_collar": "LeftShoulder", "chest": "Spine1"}),
    "cgspeed-max": ("cgspeed-max", {"l_shoulder": "LeftShoulder", "l_collar": "LeftCollar",
                                    "chest": "Chest2"}),
    "daz": ("daz", {"l_shoulder": "lShldr", "r_knee": "rShin", "hips": "hip"}),
    "asf-names": ("asf-names", {"l_shoulder": "lhumerus", "l_wrist": "lwrist", "neck": "lowerneck"}),
    "mixamo": ("cgspeed-mb", {"l_shoulder": "mixamorig:LeftArm", "l_collar": "mixamorig:LeftShoulder"}),
    "generic": ("generic", {"l_shoulder": "UpperArm_L", "l_collar": "Shoulder_L", "r_knee": "LowerLeg_R",
                            "chest": "Chest"}),
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(EXPECT))
def test_family_mapping(family):
    names = [j[0] for j in humanoid(family)[0]]
    m = map_joints(names)
    scheme, checks = EXPECT[family]
    # Mixamo names (namespace stripped) coincide with cgspeed MotionBuilder's except Spine2: either is fine
    assert m.scheme in (scheme, "mixamo")
    for k, v in checks.items():
        assert m.joints[k] == v
    assert all(k in m.joints for k in REQUIRED)


def test_generic_left_right_words():
    names = ["Hips", "Spine", "Chest", "Neck", "Head", "LeftUpperLeg", "LeftLowerLeg", "LeftFoot",
             "RightUpperLeg", "RightLowerLeg", "RightFoot", "LeftUpperArm", "LeftLowerArm", "LeftHand",
             "RightUpperArm", "RightLowerArm", "RightHand"]  # fmt: skip
    m = map_joints(names)
    assert m.scheme == "generic"
    assert m.joints["r_elbow"] == "RightLowerArm" and m.joints["l_ankle"] == "LeftFoot"
    assert m.joints["l_shoulder"] == "LeftUpperArm"


def test_real_corpus_header_names_cgspeed_mb():
    names = ("Hips LHipJoint LeftUpLeg LeftLeg LeftFoot LeftToeBase RHipJoint RightUpLeg RightLeg RightFoot "
             "RightToeBase LowerBack Spine Spine1 Neck Neck1 Head LeftShoulder LeftArm LeftForeArm LeftHand "
             "LeftFingerBase LeftHandIndex1 LThumb RightShoulder RightArm RightForeArm RightHand "
             "RightFingerBase RightHandIndex1 RThumb").split()  # fmt: skip
    m = map_joints(names)
    assert m.scheme == "cgspeed-mb" and m.joints["l_wrist"] == "LeftHand" and m.joints["neck"] == "Neck"


def test_unknown_skeleton_lists_unmapped_joints():
    names = ["root", "bone_a", "bone_b", "thing"]
    with pytest.raises(UnknownSkeletonError) as ei:
        map_joints(names)
    msg = str(ei.value)
    assert "unknown skeleton" in msg and "'bone_a'" in msg and "'thing'" in msg and "lacks" in msg
