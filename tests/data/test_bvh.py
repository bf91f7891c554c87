"""BVH reader: per-joint channel orders, FK against hand-computed positions, units, malformed files."""

from __future__ import annotations

import numpy as np
import pytest

from hipart.data.bvh import BVHError, detect_unit, load_bvh, parse_bvh_text, read_bvh
from tests.data.conftest import FAMILY_NAMES, ROOT6, ROT_ZXY, ROT_ZYX, bvh_text, humanoid

CHAIN = [
    ("root", -1, (0.0, 0.0, 0.0), ROOT6),
    ("mid", 0, (0.0, 2.0, 0.0), ROT_ZXY),
    ("tip", 1, (0.0, 1.0, 0.0), ROT_ZYX),
]


def test_fk_three_joint_chain_hand_computed(write_bvh):
    # root at (1,2,3) rotated Z=90 then X=90 (channel order Z Y X); mid rotated X=90 (order Z X Y)
    frames = np.array([[1, 2, 3, 90, 0, 90, 0, 90, 0, 0, 0, 0]], float)
    p = write_bvh("chain.bvh", bvh_text(CHAIN, {2: (0.0, 0.0, 1.0)}, frames))
    clip = load_bvh(p, unit="m")
    pos = clip.positions[0]
    # R0 = Rz90 @ Rx90: R0 @ (0,2,0) = Rz90 @ (0,0,2) = (0,0,2) -> mid = (1,2,5)
    np.testing.assert_allclose(pos[0], [1, 2, 3], atol=1e-9)
    np.testing.assert_allclose(pos[1], [1, 2, 5], atol=1e-9)
    # G1 = R0 @ Rx90 = Rz90 @ Rx180: (0,1,0) -> Rx180 -> (0,-1,0) -> Rz90 -> (1,0,0): tip = (2,2,5)
    np.testing.assert_allclose(pos[2], [2, 2, 5], atol=1e-9)
    # the End Site (0,0,1) of tip, G2 = G1: Rx180 (0,0,1) = (0,0,-1) -> Rz90 -> (0,0,-1): (2,2,4)
    np.testing.assert_allclose(clip.end_sites[2][0], [2, 2, 4], atol=1e-9)


def test_channel_order_is_read_per_joint(write_bvh):
    # same numbers, root order X Y Z: R0 = Rx90 @ Rz90: (0,2,0) -> Rz90 (-2,0,0) -> Rx90 unchanged
    chain = [("root", -1, (0.0, 0.0, 0.0), ["Xposition", "Yposition", "Zposition",
                                             "Xrotation", "Yrotation", "Zrotation"])] + CHAIN[1:]
    frames = np.array([[1, 2, 3, 90, 0, 90, 0, 90, 0, 0, 0, 0]], float)
    clip = load_bvh(write_bvh("c2.bvh", bvh_text(chain, {}, frames)), unit="m")
    np.testing.assert_allclose(clip.positions[0, 1], [-1, 2, 3], atol=1e-9)


@pytest.mark.parametrize("family", sorted(FAMILY_NAMES))
def test_each_family_reads_with_units(family, write_bvh):
    j, e, m = humanoid(family, scale=1.0, frames=4)  # centimetres
    clip = load_bvh(write_bvh(f"{family}.bvh", bvh_text(j, e, m)))
    assert clip.unit == "cm"
    assert clip.positions.shape == (4, len(j), 3)
    # shin length is 42 cm whatever the rotations
    names = clip.names
    knee = next(i for i, n in enumerate(names) if n.split(":")[-1] in
                ("LeftLeg", "LeftKnee", "lShin", "ltibia", "LowerLeg_L"))  # fmt: skip
    ankle = knee + 1
    d = np.linalg.norm(clip.positions[:, ankle] - clip.positions[:, knee], axis=-1)
    np.testing.assert_allclose(d, 0.42, atol=1e-9)


@pytest.mark.parametrize("scale,unit", [(0.01, "m"), (1.0, "cm"), (1 / 2.54, "inch"), (0.45 / 2.54, "cmu")])
def test_unit_detection(scale, unit):
    j, e, m = humanoid("cgspeed-mb", scale=scale, frames=1)
    mot = parse_bvh_text(bvh_text(j, e, m))
    assert detect_unit(mot.skeleton)[0] == unit


def _good():
    return bvh_text(CHAIN, {2: (0.0, 0.0, 1.0)}, np.zeros((3, 12)))


def test_truncated_motion_names_file_and_line(write_bvh):
    text = _good().rstrip("\n").rsplit("\n", 1)[0] + "\n"  # drop the last data line
    p = write_bvh("trunc.bvh", text)
    with pytest.raises(BVHError) as ei:
        read_bvh(p)
    assert "trunc.bvh:" in str(ei.value) and "truncated" in str(ei.value)
    assert ei.value.line == len(text.splitlines())


def test_wrong_channel_count_names_line(write_bvh):
    lines = _good().splitlines()
    lines[-2] = lines[-2] + " 0"  # 13 values on the 2nd data line
    p = write_bvh("cc.bvh", "\n".join(lines) + "\n")
    with pytest.raises(BVHError) as ei:
        read_bvh(p)
    assert ei.value.line == len(lines) - 1
    assert "expected 12 channel values" in str(ei.value)


def test_unparsable_number(write_bvh):
    lines = _good().splitlines()
    lines[-1] = lines[-1].replace("0", "0.0.1", 1)
    p = write_bvh("num.bvh", "\n".join(lines) + "\n")
    with pytest.raises(BVHError, match=rf"num\.bvh:{len(lines)}: unparsable number '0\.0\.1'"):
        read_bvh(p)


def test_bad_offset_and_unknown_channel(write_bvh):
    t = _good().replace("OFFSET 0.0 2.0 0.0", "OFFSET 0.0 two 0.0")
    with pytest.raises(BVHError, match=r"off\.bvh:\d+: unparsable number 'two'"):
        read_bvh(write_bvh("off.bvh", t))
    t = _good().replace("Zrotation Xrotation Yrotation", "Zrotation Xrotation Wrotation")
    with pytest.raises(BVHError, match="unknown channel 'Wrotation'"):
        read_bvh(write_bvh("ch.bvh", t))


def test_missing_file_and_hierarchy_eof(tmp_path, write_bvh):
    with pytest.raises(BVHError, match="cannot read"):
        read_bvh(tmp_path / "nope.bvh")
    with pytest.raises(BVHError, match="unexpected end of file"):
        read_bvh(write_bvh("eof.bvh", "HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n"))
