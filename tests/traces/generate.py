#!/usr/bin/env python3
"""Writes the synthetic traces in this folder (one Snapshot per line, the
format of `headroom record` and of a log's `sample` lines).

The traces are synthetic but shaped like real incidents: sizes, rates and
command lines as seen on 16 / 32 GiB Macs and a Linux workstation. They are
deterministic (no randomness): run `python3 tests/traces/generate.py` and
then `HEADROOM_BLESS=1 cargo test --test replay` to refresh the
`*.expected.jsonl` decisions, and review the diff.
"""
import json
import math
import os

GIB = 1024**3
MIB = 1024**2
HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, snaps):
    with open(os.path.join(HERE, name + ".jsonl"), "w") as f:
        for s in snaps:
            f.write(json.dumps(s, separators=(",", ":")) + "\n")


def growth(history, t, window=5):
    """Footprint change over the last ~5 s, bytes/s (as the sampler computes it)."""
    past = [(ht, fp) for ht, fp in history if t - ht <= window]
    if len(past) < 2:
        return 0.0
    (t0, f0), (t1, f1) = past[0], past[-1]
    return (f1 - f0) / (t1 - t0) if t1 > t0 else 0.0


def mac_snapshot(at, total, avail, wired, compressed, swap_total, swap_used,
                 swapout, kernel, procs):
    app = total - avail - wired - compressed
    assert app > 0, (at, app)
    s = {
        "at": round(at, 3),
        "total_bytes": total,
        "available_bytes": int(avail),
        "app_bytes": int(app),
        "wired_bytes": int(wired),
        "compressed_bytes": int(compressed),
        "cached_bytes": int(avail * 0.62),
        "free_bytes": int(avail * 0.12),
        "swap_total_bytes": int(swap_total),
        "swap_used_bytes": int(swap_used),
        "kernel_level": kernel,
    }
    if swapout is not None:
        s["swapout_bytes_per_sec"] = round(swapout, 1)
    s["mlx_processes"] = procs
    return s


def lora_swap_creep():
    """mlx_lm.lora on a 16 GiB MacBook Pro: a non-quantized 7B model at batch
    size 4 creeps up ~40 MiB/s; the Mac compresses and swaps, available memory
    falls slowly, the projection and swap-out make it yellow, it reaches red
    and is stopped with SIGTERM after terminate_after, then exits."""
    total = 16 * GIB
    cmd = ("/opt/homebrew/bin/python3.12 -m mlx_lm.lora --model mlx-community/"
           "Mistral-7B-Instruct-v0.3 --train --data ./data --batch-size 4 "
           "--max-seq-length 2048 --iters 600")
    proc = dict(pid=4242, uid=501, start_time=1718000000123456, name="Python",
                cmdline=cmd, program="mlx_lm.lora", matched_by="pattern:^mlx_lm(\\.[a-z_.]+)?$")
    snaps, history = [], []
    fp = 7.0 * GIB
    peak = fp
    swap_used = 0.6 * GIB
    term_at = None
    t = 0
    while True:
        at = t * 1.0 + 0.004
        alive = term_at is None or t < term_at + 2
        if alive and t > 0:
            fp += (40 + 12 * math.sin(t / 6.0)) * MIB
        used_by_job = fp - 7.0 * GIB if alive else 0
        avail = 7.6 * GIB - 0.85 * used_by_job
        swapout = None
        if t > 0:
            swapout = max(0.0, (5.0 * GIB - avail) / GIB * 55 * MIB) if alive else 0.0
            swap_used += swapout
        compressed = 0.5 * GIB + max(0.0, 7.6 * GIB - avail) * 0.35
        wired = 1.5 * GIB + (0.72 * fp if alive else 0)
        if not alive:
            # memory comes back over a few seconds after the exit
            since = t - (term_at + 2)
            avail = min(11.8 * GIB, 9.0 * GIB + since * 0.6 * GIB)
            compressed = 0.9 * GIB
        kernel = "warn" if avail < 3.0 * GIB else "normal"
        procs = []
        if alive:
            peak = max(peak, fp)
            history.append((at, fp))
            procs = [dict(proc, footprint_bytes=int(fp), rss_bytes=int(fp * 0.3),
                          peak_bytes=int(peak),
                          growth_bytes_per_sec=round(growth(history, at), 1))]
        swap_total = max(1 * GIB, math.ceil((swap_used + 0.3 * GIB) / GIB) * GIB)
        snaps.append(mac_snapshot(at, total, avail, wired, compressed, swap_total,
                                  swap_used, swapout, kernel, procs))
        if term_at is None and avail < 2 * GIB:
            term_at = t + 5  # red now; SIGTERM after terminate_after (5 s)
        if term_at is not None and t >= term_at + 16:
            break
        t += 1
    write("lora_swap_creep", snaps)


def kv_cache_blowup():
    """mlx_lm.server on a 32 GiB Mac Studio: idle at 5 GiB, then a request
    with a huge prompt grows the KV cache ~2 GiB/s; memory crosses red and the
    kill floor within seconds (SIGTERM at once), the server keeps growing
    through the SIGTERM, falls below half the floor (SIGKILL), and is gone."""
    total = 32 * GIB
    cmd = ("/Users/ana/.venv/bin/python3 /Users/ana/.venv/bin/mlx_lm.server "
           "--model mlx-community/Meta-Llama-3.1-8B-Instruct-4bit --port 8080")
    proc = dict(pid=5150, uid=501, start_time=1718000555000000, name="python3",
                cmdline=cmd, program="mlx_lm.server", matched_by="pattern:^mlx_lm(\\.[a-z_.]+)?$")
    snaps, history = [], []
    fp, peak = 5.2 * GIB, 5.2 * GIB
    swap_used = 0.0
    t, gone_at = 0, None
    prev_avail = 20.5 * GIB
    while t < 45:
        at = t * 1.0 + 0.002
        alive = gone_at is None
        if alive and 20 <= t:
            fp += 2.05 * GIB
        job = fp - 5.2 * GIB if alive else 0
        if job < 16 * GIB:
            avail = 20.5 * GIB - job * 0.95
        else:
            # the compressor and swap absorb more of the growth as free
            # memory runs out: available memory falls ever more slowly
            avail = prev_avail * 0.55
        prev_avail = avail
        swapout = None if t == 0 else (max(0.0, (6 * GIB - avail) / GIB * 120 * MIB) if alive else 0.0)
        if swapout:
            swap_used += swapout
        compressed = 0.8 * GIB + max(0.0, 20.5 * GIB - avail) * 0.1
        wired = 3.0 * GIB + (0.8 * fp if alive else 0)
        if not alive:
            avail = min(25.5 * GIB, 24.0 * GIB + (t - gone_at) * 0.5 * GIB)
            compressed = 1.2 * GIB
        kernel = "critical" if avail < 1.5 * GIB else "warn" if avail < 4 * GIB else "normal"
        procs = []
        if alive:
            peak = max(peak, fp)
            history.append((at, fp))
            procs = [dict(proc, footprint_bytes=int(fp), rss_bytes=int(fp * 0.25),
                          peak_bytes=int(peak),
                          growth_bytes_per_sec=round(growth(history, at), 1))]
        swap_total = max(1 * GIB, math.ceil((swap_used + 0.3 * GIB) / GIB) * GIB)
        snaps.append(mac_snapshot(at, total, avail, wired, compressed, swap_total,
                                  swap_used, swapout, kernel, procs))
        if alive and avail < 0.5 * GIB:
            gone_at = t + 1  # SIGKILL on this sample; gone on the next
        t += 1
    write("kv_cache_blowup", snaps)


def non_mlx_hog():
    """A Linux workstation (32 GiB, PSI, swap) where a parallel C++ link (not
    MLX) eats the memory: yellow, then red for ~25 s, and headroom has nobody
    it may stop (no_victim) — it never signals anything; then the link ends."""
    total = 32 * GIB
    snaps = []
    swap_used = 0.2 * GIB
    was_red = False
    for t in range(0, 110):
        at = t * 1.0 + 0.001
        if t < 10:
            used = 0.0
        elif t < 60:
            used = (t - 10) * 0.26 * GIB  # ~266 MiB/s for 50 s
        elif t < 85:
            used = 13.0 * GIB + 0.3 * GIB * math.sin(t)
        else:
            used = max(0.0, 13.0 * GIB - (t - 85) * 2.5 * GIB)
        avail = 14.5 * GIB - used
        swapout = None if t == 0 else max(0.0, (4.5 * GIB - avail) / GIB * 30 * MIB)
        if swapout:
            swap_used += swapout
        tight = max(0.0, (6 * GIB - avail) / GIB)
        s = {
            "at": round(at, 3),
            "total_bytes": total,
            "available_bytes": int(avail),
            "app_bytes": int(12 * GIB + used),
            "wired_bytes": int(64 * MIB),
            "cached_bytes": int(avail * 0.7),
            "free_bytes": int(avail * 0.2),
            "swap_total_bytes": 8 * GIB,
            "swap_used_bytes": int(swap_used),
            "psi_some_avg10": round(min(60.0, tight * 9.0), 2),
            "psi_full_avg10": round(min(30.0, tight * 4.5), 2),
        }
        if swapout is not None:
            s["swapout_bytes_per_sec"] = round(swapout, 1)
        s["mlx_processes"] = []
        # The daemon reads the largest processes from the sample after the
        # level turned red (and while it stays red).
        if was_red:
            s["top_processes"] = [
                {"pid": 30101, "uid": 1000, "name": "ld.lld", "footprint_bytes": int(used * 0.8), "mlx": False},
                {"pid": 30088, "uid": 1000, "name": "cc1plus", "footprint_bytes": int(used * 0.1), "mlx": False},
                {"pid": 2210, "uid": 1000, "name": "firefox", "footprint_bytes": int(0.9 * GIB), "mlx": False},
            ]
        was_red = avail < 2 * GIB or (was_red and avail < 2.5 * GIB)
        snaps.append(s)
    write("non_mlx_hog", snaps)


if __name__ == "__main__":
    lora_swap_creep()
    kv_cache_blowup()
    non_mlx_hog()
