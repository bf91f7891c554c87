"""Synthetic ID-switch / speed benchmark: norfair vs ByteTrack (Roboflow trackers) on 17-joint keypoint tracks."""

import logging
import time
import warnings

import numpy as np

logging.disable(logging.WARNING)

warnings.filterwarnings("ignore")

W, H = 1280, 720
# a 17-joint standing template (COCO order-ish), pixels, root at the hips' centre, ~ 1.0 = 170 px tall
TEMPLATE = np.array(
    [
        [0, -150],
        [-6, -156],
        [6, -156],
        [-14, -152],
        [14, -152],
        [-30, -120],
        [30, -120],
        [-40, -80],
        [40, -80],
        [-44, -40],
        [44, -40],
        [-18, 0],
        [18, 0],
        [-20, 60],
        [20, 60],
        [-22, 120],
        [22, 120],
    ],
    np.float32,
)


def scenario(p, frames, seed, noise=3.0, drop=0.1, joint_drop=0.1, occl=0.0, same_speed=False):
    """p persons crossing in pairs (opposite directions, near the same height), with noise and dropped detections."""
    rng = np.random.default_rng(seed)
    tracks = []
    for i in range(p):
        d = 1 if i % 2 == 0 else -1
        x0 = (150 if d == 1 else W - 150) - d * 260 * (i // 2)  # same-direction walkers stagger
        y = 420 + 25 * (i // 2) + rng.uniform(-15, 15)
        speed = 6.0 if same_speed else rng.uniform(4, 9)
        scale = rng.uniform(0.8, 1.2)
        t = np.arange(frames)
        x = x0 + d * speed * t
        gait = np.sin(t * 0.3 + rng.uniform(0, 6))[:, None] * 10
        k = TEMPLATE[None] * scale + np.stack([x, np.full(frames, y)], 1)[:, None]
        k = k.copy()
        k[:, 13:, 0] += gait * np.array([1, -1, 1, -1])[None]  # legs swing
        tracks.append(k)
    gt = np.stack(tracks, 1)  # [F, P, 17, 2]
    out = []
    for f in range(frames):
        ks, cs, ids = [], [], []
        for i in range(p):
            x = gt[f, i]
            if not (0 < x[:, 0].mean() < W) or rng.random() < drop:
                continue
            if occl and any(abs(gt[f, j, :, 0].mean() - x[:, 0].mean()) < 60 for j in range(i)) and rng.random() < occl:
                continue
            c = rng.uniform(0.6, 1.0, 17).astype(np.float32)
            c[rng.random(17) < joint_drop] = rng.uniform(0, 0.2)
            ks.append(x + rng.normal(0, noise, x.shape))
            cs.append(c)
            ids.append(i)
        order = rng.permutation(len(ks))  # detector order is arbitrary
        out.append(
            (
                np.array([ks[j] for j in order], np.float32).reshape(-1, 17, 2),
                np.array([cs[j] for j in order], np.float32).reshape(-1, 17),
                [ids[j] for j in order],
            )
        )
    return out


def bbox(k, c, th=0.3):
    out = []
    for kk, cc in zip(k, c, strict=False):
        v = kk[cc >= th] if (cc >= th).sum() >= 2 else kk
        x0, y0 = v.min(0)
        x1, y1 = v.max(0)
        pw, ph = 0.1 * (x1 - x0) + 5, 0.1 * (y1 - y0) + 5
        out.append([x0 - pw, y0 - ph, x1 + pw, y1 + ph])
    return np.array(out, np.float32).reshape(-1, 4)


class Norfair:
    def __init__(self, variant="oks"):
        import norfair

        self.nf = norfair

        def dist(det, obj):  # mean joint distance over confident joints / person scale
            m = det.scores >= 0.3
            if m.sum() < 2:
                m = np.ones_like(m, bool)
            d = np.linalg.norm(det.points[m] - obj.estimate[m], axis=1).mean()
            s = np.ptp(det.points[m], axis=0).max() + 1.0
            return d / s

        if variant == "oks":
            self.t = norfair.Tracker(
                distance_function=dist,
                distance_threshold=0.5,
                hit_counter_max=30,
                initialization_delay=0,
                detection_threshold=0.3,
                pointwise_hit_counter_max=4,
            )
        elif variant == "euclid":
            self.t = norfair.Tracker(
                distance_function="mean_euclidean", distance_threshold=80, hit_counter_max=30, initialization_delay=0
            )
        elif variant == "iou":
            self.t = norfair.Tracker(
                distance_function="iou", distance_threshold=0.9, hit_counter_max=30, initialization_delay=0
            )
        self.variant = variant

    def __call__(self, k, c):
        if self.variant == "iou":
            b = bbox(k, c)
            dets = [self.nf.Detection(bb.reshape(2, 2), scores=np.ones(2)) for bb in b]
        else:
            dets = [self.nf.Detection(kk, scores=cc) for kk, cc in zip(k, c, strict=False)]
        self.t.update(dets)
        idx = {id(d): i for i, d in enumerate(dets)}
        ids = [-1] * len(dets)
        for o in self.t.tracked_objects:
            i = idx.get(id(o.last_detection))
            if i is not None and o.id is not None:
                ids[i] = o.id
        return ids


class Byte:
    def __init__(self):
        import supervision as sv
        from trackers import ByteTrackTracker

        self.sv = sv
        self.t = ByteTrackTracker(
            lost_track_buffer=30,
            frame_rate=30,
            minimum_consecutive_frames=1,
            track_activation_threshold=0.5,
            high_conf_det_threshold=0.5,
        )

    def __call__(self, k, c):
        n = len(k)
        det = self.sv.Detections(
            xyxy=bbox(k, c),
            confidence=np.array([cc.mean() for cc in c], np.float32).reshape(-1),
            data={"idx": np.arange(n)},
        )
        out = self.t.update(det)
        ids = [-1] * n
        for i, tid in zip(out.data.get("idx", []), out.tracker_id, strict=False):
            ids[int(i)] = int(tid)
        return ids


def evaluate(make, persons=(2, 3, 4), seeds=range(5), frames=300, **kw):
    sw, pf, t_us, nf = 0, 0, 0.0, 0
    for p in persons:
        for s in seeds:
            data = scenario(p, frames, 100 * p + s, **kw)
            trk = make()
            last = {}
            for k, c, gid in data:
                t0 = time.perf_counter()
                ids = trk(k, c)
                t_us += (time.perf_counter() - t0) * 1e6
                nf += 1
                for g, i in zip(gid, ids, strict=False):
                    pf += 1
                    if i < 0:
                        continue
                    if g in last and last[g] != i:
                        sw += 1
                    last[g] = i
    return 1000 * sw / pf, t_us / nf, pf


if __name__ == "__main__":
    settings = {
        "easy (noise 3px, 10% dropped)": {},
        "hard (noise 6px, 15% dropped, same speed, 70% occluded at crossings)": dict(
            noise=6.0, drop=0.15, occl=0.7, same_speed=True
        ),
    }
    for label, kw in settings.items():
        print("==", label)
        for name, make in [
            ("norfair keypoints (scale-normalised)", lambda: Norfair("oks")),
            ("norfair mean_euclidean", lambda: Norfair("euclid")),
            ("norfair iou (boxes)", lambda: Norfair("iou")),
            ("ByteTrack (trackers 2.6.1)", Byte),
        ]:
            r, us, pf = evaluate(make, **kw)
            print(f"{name:38s} IDSW/1k person-frames {r:6.2f}  {us:7.1f} us/frame  ({pf} person-frames)", flush=True)
