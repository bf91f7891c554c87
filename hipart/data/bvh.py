"""BVH motion files: parser, forward kinematics and unit detection (positions in metres).

Channel orders are read per joint from the HIERARCHY (families differ even per joint). A joint with
position channels uses them as its local translation (the offset is the rest translation otherwise);
rotation channels compose in the listed order, R = R_c1 @ R_c2 @ R_c3 (intrinsic, the BVH convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_ROT = {"Xrotation": 0, "Yrotation": 1, "Zrotation": 2}
_POS = {"Xposition": 0, "Yposition": 1, "Zposition": 2}

# Candidate length units -> metres. "cmu" is the CMU ASF unit (inches / 0.45) kept by cgspeed conversions.
UNIT_SCALES: dict[str, float] = {
    "m": 1.0,
    "cm": 0.01,
    "mm": 0.001,
    "inch": 0.0254,
    "cmu": 0.0254 / 0.45,
}
_TYPICAL_HEIGHT_M = 1.7


class BVHError(ValueError):
    """A malformed BVH file; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int | None, msg: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {msg}")
        self.path = str(path)
        self.line = line


@dataclass
class BVHSkeleton:
    """The HIERARCHY: joint names, parents, rest offsets, channels and end sites (file units)."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray  # [J, 3]
    channels: list[list[str]]
    end_sites: dict[int, np.ndarray] = field(default_factory=dict)  # joint -> end-site offset

    @property
    def num_channels(self) -> int:
        """Total number of motion channels per frame."""
        return sum(len(c) for c in self.channels)

    def index(self, name: str) -> int:
        """Index of a joint by name."""
        return self.names.index(name)


@dataclass
class BVHMotion:
    """A parsed BVH file: skeleton, frame time and the raw channel values [F, C]."""

    path: str
    skeleton: BVHSkeleton
    frame_time: float
    values: np.ndarray  # [F, C] float64, file units and degrees


@dataclass
class BVHClip:
    """Global joint positions in metres (Y up, as in the file) plus the detected unit."""

    path: str
    names: list[str]
    parents: list[int]
    positions: np.ndarray  # [F, J, 3] metres
    rotations: np.ndarray  # [F, J, 3, 3] global joint rotations
    end_sites: dict[int, np.ndarray]  # joint -> [F, 3] metres
    frame_time: float
    unit: str
    scale: float  # file unit -> metres


def _tokens(lines: list[str], start: int):
    for i in range(start, len(lines)):
        for tok in lines[i].split():
            yield i + 1, tok


def parse_bvh_text(text: str, path: str | Path = "<string>") -> BVHMotion:
    """Parse BVH text; raises BVHError (file:line) on any malformation."""
    lines = text.splitlines()
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    end_sites: dict[int, np.ndarray] = {}
    toks = _tokens(lines, 0)

    def nxt(expect: str | None = None) -> tuple[int, str]:
        try:
            ln, tok = next(toks)
        except StopIteration:
            raise BVHError(path, len(lines), "unexpected end of file in HIERARCHY") from None
        if expect is not None and tok.upper() != expect.upper():
            raise BVHError(path, ln, f"expected {expect!r}, found {tok!r}")
        return ln, tok

    def number(ln_tok: tuple[int, str]) -> float:
        ln, tok = ln_tok
        try:
            v = float(tok)
        except ValueError:
            raise BVHError(path, ln, f"unparsable number {tok!r}") from None
        if not math.isfinite(v):
            raise BVHError(path, ln, f"non-finite number {tok!r}")
        return v

    nxt("HIERARCHY")
    stack: list[int] = []
    ln, tok = nxt()
    if tok.upper() != "ROOT":
        raise BVHError(path, ln, f"expected ROOT, found {tok!r}")
    pending: str | None = "ROOT"
    motion_line = None
    while True:
        if pending in ("ROOT", "JOINT"):
            ln, name = nxt()
            nxt("{")
            j = len(names)
            names.append(name)
            parents.append(stack[-1] if stack else -1)
            ln, _ = nxt("OFFSET")
            offsets.append([number(nxt()) for _ in range(3)])
            ln, _ = nxt("CHANNELS")
            ln_n, ntok = nxt()
            try:
                n = int(ntok)
            except ValueError:
                raise BVHError(path, ln_n, f"unparsable channel count {ntok!r}") from None
            chans = []
            for _ in range(n):
                ln_c, c = nxt()
                if c not in _ROT and c not in _POS:
                    raise BVHError(path, ln_c, f"unknown channel {c!r} for joint {name!r}")
                chans.append(c)
            channels.append(chans)
            stack.append(j)
        elif pending == "End":
            nxt("Site")
            nxt("{")
            nxt("OFFSET")
            off = np.array([number(nxt()) for _ in range(3)])
            nxt("}")
            if not stack:
                raise BVHError(path, ln, "End Site outside any joint")
            end_sites[stack[-1]] = off
        ln, tok = nxt()
        if tok == "}":
            if not stack:
                raise BVHError(path, ln, "unbalanced '}'")
            stack.pop()
            pending = None
            if not stack:
                ln, tok = nxt()
                if tok.upper() != "MOTION":
                    raise BVHError(path, ln, f"expected MOTION after the hierarchy, found {tok!r}")
                motion_line = ln
                break
            continue
        if tok.upper() == "JOINT":
            pending = "JOINT"
        elif tok == "End":
            pending = "End"
        else:
            raise BVHError(path, ln, f"expected JOINT, End Site or '}}', found {tok!r}")
    skel = BVHSkeleton(names, parents, np.asarray(offsets, dtype=np.float64), channels, end_sites)

    # MOTION section: "Frames: N", "Frame Time: t", then N lines of exactly C numbers.
    i = motion_line  # index of the line after MOTION (0-based == 1-based line of MOTION)
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or not lines[i].strip().startswith("Frames:"):
        raise BVHError(path, min(i + 1, len(lines)), "expected 'Frames: N'")
    try:
        n_frames = int(lines[i].split(":", 1)[1])
    except ValueError:
        raise BVHError(path, i + 1, f"unparsable frame count in {lines[i].strip()!r}") from None
    if n_frames < 0:
        raise BVHError(path, i + 1, f"frame count must be >= 0, got {n_frames}")
    i += 1
    if i >= len(lines) or not lines[i].strip().startswith("Frame Time:"):
        raise BVHError(path, min(i + 1, len(lines)), "expected 'Frame Time: t'")
    try:
        frame_time = float(lines[i].split(":", 1)[1])
    except ValueError:
        raise BVHError(path, i + 1, f"unparsable frame time in {lines[i].strip()!r}") from None
    if not (frame_time > 0 and math.isfinite(frame_time)):
        raise BVHError(path, i + 1, f"frame time must be finite and > 0, got {frame_time}")
    i += 1
    data_lines = [(k + 1, s) for k, s in enumerate(lines[i:], start=i) if s.strip()]
    C = skel.num_channels
    if len(data_lines) < n_frames:
        last = data_lines[-1][0] if data_lines else i
        raise BVHError(path, last, f"truncated motion: Frames: {n_frames} but {len(data_lines)} data lines")
    if len(data_lines) > n_frames:
        raise BVHError(path, data_lines[n_frames][0], f"{len(data_lines)} data lines but Frames: {n_frames}")
    values = np.empty((n_frames, C), dtype=np.float64)
    for f, (ln, s) in enumerate(data_lines):
        parts = s.split()
        if len(parts) != C:
            raise BVHError(path, ln, f"expected {C} channel values (from HIERARCHY), found {len(parts)}")
        try:
            values[f] = [float(p) for p in parts]
        except ValueError:
            bad = next(p for p in parts if not _is_float(p))
            raise BVHError(path, ln, f"unparsable number {bad!r}") from None
    if not np.isfinite(values).all():
        f = int(np.nonzero(~np.isfinite(values).all(axis=1))[0][0])
        raise BVHError(path, data_lines[f][0], "non-finite value in motion data")
    if n_frames == 0:
        raise BVHError(path, i, "no motion frames")
    return BVHMotion(str(path), skel, frame_time, values)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_bvh(path: str | Path) -> BVHMotion:
    """Read and parse a BVH file (raises BVHError naming the file and line)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise BVHError(p, None, f"not a text file ({e.reason})") from None
    except OSError as e:
        raise BVHError(p, None, f"cannot read: {e.strerror}") from None
    return parse_bvh_text(text, p)


def axis_rotations(axis: int, deg: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] about axis 0/1/2 (x/y/z) by angles in degrees."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(deg.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1.0
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def forward_kinematics(motion: BVHMotion) -> tuple[np.ndarray, np.ndarray]:
    """Global joint positions [F, J, 3] (file units) and global rotations [F, J, 3, 3]."""
    sk = motion.skeleton
    F = motion.values.shape[0]
    J = len(sk.names)
    pos = np.zeros((F, J, 3))
    rot = np.zeros((F, J, 3, 3))
    col = 0
    for j in range(J):
        R = np.broadcast_to(np.eye(3), (F, 3, 3)).copy()
        t = np.broadcast_to(sk.offsets[j], (F, 3)).copy()
        has_pos = False
        for c in sk.channels[j]:
            v = motion.values[:, col]
            col += 1
            if c in _ROT:
                R = R @ axis_rotations(_ROT[c], v)
            else:
                if not has_pos:
                    t = np.zeros((F, 3))
                    has_pos = True
                t[:, _POS[c]] = v
        p = sk.parents[j]
        if p < 0:
            pos[:, j] = t
            rot[:, j] = R
        else:
            pos[:, j] = pos[:, p] + np.einsum("fij,fj->fi", rot[:, p], t)
            rot[:, j] = rot[:, p] @ R
    return pos, rot


def rest_height(sk: BVHSkeleton) -> float:
    """Vertical extent (file units) of the rest pose built from the offsets, end sites included."""
    J = len(sk.names)
    pos = np.zeros((J, 3))
    pts = []
    for j in range(J):
        p = sk.parents[j]
        pos[j] = sk.offsets[j] if p < 0 else pos[p] + sk.offsets[j]
        pts.append(pos[j])
        if j in sk.end_sites:
            pts.append(pos[j] + sk.end_sites[j])
    pts = np.asarray(pts)
    # the up axis is the one with the largest extent among y (the BVH default) and z
    return float(max(np.ptp(pts[:, 1]), np.ptp(pts[:, 2])))


def detect_unit(sk: BVHSkeleton) -> tuple[str, float]:
    """Pick the length unit (m/cm/mm/inch/cmu) whose rest-pose height is closest to a human's 1.7 m."""
    h = rest_height(sk)
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"degenerate skeleton: rest height {h}, cannot detect units")
    # log(h) + log(scale), not log(h * scale): a denormal height must not underflow to log(0)
    best = min(UNIT_SCALES.items(), key=lambda kv: abs(math.log(h) + math.log(kv[1] / _TYPICAL_HEIGHT_M)))
    return best


def load_bvh(path: str | Path, unit: str | None = None) -> BVHClip:
    """Read a BVH file, run FK and convert to metres (unit auto-detected unless given)."""
    motion = read_bvh(path)
    return clip_from_motion(motion, unit)


def clip_from_motion(motion: BVHMotion, unit: str | None = None) -> BVHClip:
    """FK + unit conversion of a parsed motion."""
    sk = motion.skeleton
    if unit is None:
        try:
            unit, scale = detect_unit(sk)
        except ValueError as e:
            raise BVHError(motion.path, None, str(e)) from None
    else:
        if unit not in UNIT_SCALES:
            raise ValueError(f"unknown unit {unit!r}; choose one of {sorted(UNIT_SCALES)}")
        scale = UNIT_SCALES[unit]
    pos, rot = forward_kinematics(motion)
    if not np.isfinite(pos).all():
        raise BVHError(motion.path, None, "joint positions overflow (offsets or translations too large)")
    ends = {j: (pos[:, j] + np.einsum("fij,j->fi", rot[:, j], off)) * scale
            for j, off in sk.end_sites.items()}  # fmt: skip
    return BVHClip(
        path=motion.path,
        names=list(sk.names),
        parents=list(sk.parents),
        positions=pos * scale,
        rotations=rot,
        end_sites=ends,
        frame_time=motion.frame_time,
        unit=unit,
        scale=scale,
    )
