"""Shared helpers for the data tests: tiny synthetic BVH files written in the test."""

from __future__ import annotations

import numpy as np
import pytest


def bvh_text(joints: list[tuple[str, int, tuple[float, float, float], list[str]]],
             end_sites: dict[int, tuple[float, float, float]], frames: np.ndarray,
             frame_time: float = 1 / 30) -> str:  # fmt: skip
    """BVH text from (name, parent, offset, channels) in depth-first order; parents precede children."""
    children: dict[int, list[int]] = {}
    for i, (_, p, _, _) in enumerate(joints):
        children.setdefault(p, []).append(i)
    out = ["HIERARCHY"]

    def emit(i: int, depth: int) -> None:
        name, p, off, ch = joints[i]
        ind = "  " * depth
        out.append(f"{ind}{'ROOT' if p < 0 else 'JOINT'} {name}")
        out.append(f"{ind}{{")
        out.append(f"{ind}  OFFSET {off[0]} {off[1]} {off[2]}")
        out.append(f"{ind}  CHANNELS {len(ch)} {' '.join(ch)}")
        for c in children.get(i, []):
            emit(c, depth + 1)
        if i in end_sites:
            e = end_sites[i]
            out.extend([f"{ind}  End Site", f"{ind}  {{", f"{ind}    OFFSET {e[0]} {e[1]} {e[2]}",
                        f"{ind}  }}"])
        out.append(f"{ind}}}")

    emit(0, 0)
    out += ["MOTION", f"Frames: {len(frames)}", f"Frame Time: {frame_time}"]
    out += [" ".join(f"{v:g}" for v in row) for row in frames]
    return "\n".join(out) + "\n"


ROOT6 = ["Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation"]
ROT_ZYX = ["Zrotation", "Yrotation", "Xrotation"]
ROT_ZXY = ["Zrotation", "Xrotation", "Yrotation"]

# name templates of a humanoid per family: semantic part -> joint name (L/R via {S}/{s}), in a tree
FAMILY_NAMES = {
    "cgspeed-mb": dict(hips="Hips", spine="LowerBack", chest="Spine1", neck="Neck", head="Head",
                       hip="{S}UpLeg", knee="{S}Leg", ankle="{S}Foot", toe="{S}ToeBase",
                       collar="{S}Shoulder", shoulder="{S}Arm", elbow="{S}ForeArm", wrist="{S}Hand"),
    "cgspeed-max": dict(hips="Hips", spine="lowerback", chest="Chest2", neck="lowerneck", head="Head",
                        hip="{S}Hip", knee="{S}Knee", ankle="{S}Ankle", toe="{S}Toe",
                        collar="{S}Collar", shoulder="{S}Shoulder", elbow="{S}Elbow", wrist="{S}Wrist"),
    "daz": dict(hips="hip", spine="abdomen", chest="chest", neck="neck", head="head",
                hip="{s}Thigh", knee="{s}Shin", ankle="{s}Foot", toe=None,
                collar="{s}Collar", shoulder="{s}Shldr", elbow="{s}ForeArm", wrist="{s}Hand"),
    "asf-names": dict(hips="hip", spine="lowerback", chest="thorax", neck="lowerneck", head="head",
                      hip="{s}femur", knee="{s}tibia", ankle="{s}foot", toe="{s}toes",
                      collar="{s}clavicle", shoulder="{s}humerus", elbow="{s}radius", wrist="{s}wrist"),
    "mixamo": dict(hips="mixamorig:Hips", spine="mixamorig:Spine", chest="mixamorig:Spine2",
                   neck="mixamorig:Neck", head="mixamorig:Head", hip="mixamorig:{S}UpLeg",
                   knee="mixamorig:{S}Leg", ankle="mixamorig:{S}Foot", toe="mixamorig:{S}ToeBase",
                   collar="mixamorig:{S}Shoulder", shoulder="mixamorig:{S}Arm",
                   elbow="mixamorig:{S}ForeArm", wrist="mixamorig:{S}Hand"),
    "generic": dict(hips="Hips", spine="Spine", chest="Chest", neck="Neck", head="Head",
                    hip="UpperLeg_{C}", knee="LowerLeg_{C}", ankle="Foot_{C}", toe="Toes_{C}",
                    collar="Shoulder_{C}", shoulder="UpperArm_{C}", elbow="LowerArm_{C}", wrist="Hand_{C}"),
}  # fmt: skip

# rest offsets in centimetres (a 1.75 m T-posed person, Y up, facing +Z, left = +X)
_OFF = dict(spine=(0, 10, 0), chest=(0, 25, 0), neck=(0, 20, 0), head=(0, 10, 0),
            hip=(10, -5, 0), knee=(0, -45, 0), ankle=(0, -42, 0), toe=(0, -5, 12),
            collar=(5, 15, 0), shoulder=(12, 0, 0), elbow=(28, 0, 0), wrist=(25, 0, 0))  # fmt: skip


def humanoid(family: str, scale: float = 1.0, frames: int = 3, rng_seed: int = 0):
    """(joints, end_sites, motion) of a small humanoid with the family's joint names (offsets in cm*scale)."""
    names = FAMILY_NAMES[family]
    joints: list = []

    def add(part: str, parent: int, side: str | None = None) -> int:
        tpl = names[part]
        if tpl is None:
            return parent
        S, s, C = ("Left", "l", "L") if side == "l" else ("Right", "r", "R")
        name = tpl.format(S=S, s=s, C=C)
        off = np.array(_OFF.get(part, (0, 0, 0)), float) * scale
        if side == "r":
            off[0] = -off[0]
        joints.append((name, parent, tuple(off), ROOT6 if parent < 0 else ROT_ZXY))
        return len(joints) - 1

    hips = add("hips", -1)
    ends = {}
    for side in ("l", "r"):
        k = add("ankle", add("knee", add("hip", hips, side), side), side)
        t = add("toe", k, side)
        ends[t] = tuple(np.array([0, 0, 5.0]) * scale)
    sp = add("spine", hips)
    ch = add("chest", sp)
    hd = add("head", add("neck", ch))
    ends[hd] = tuple(np.array([0, 15.0, 0]) * scale)
    for side in ("l", "r"):
        w = add("wrist", add("elbow", add("shoulder", add("collar", ch, side), side), side), side)
        ends[w] = tuple(np.array([8.0 if side == "l" else -8.0, 0, 0]) * scale)
    rng = np.random.default_rng(rng_seed)
    C = sum(len(j[3]) for j in joints)
    motion = rng.uniform(-20, 20, size=(frames, C))
    motion[:, :3] = np.array([0, 95, 0]) * scale
    return joints, ends, motion


@pytest.fixture
def write_bvh(tmp_path):
    """Write BVH text to tmp_path/<name> and return the path."""

    def _w(name: str, text: str):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    return _w
