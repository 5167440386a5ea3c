#!/usr/bin/env python3
"""Draws `tinyllm bench --json` results beside llama.cpp's figures as an SVG bar chart.

  python3 tools/bench/plot_bench.py --bench bench.json --out book/figures/week2_performance.svg

Four panels (pp512 1t, pp512 2t, tg128 1t, tg128 2t), one pair of bars per precision: llama.cpp's
figure on the same machine kind (../shared/performance.md, lower end of its range) and ours (mean,
with a whisker of one standard deviation). Stdlib only.
"""
import argparse
import json
import pathlib

# llama.cpp b4748 on the course's 2-vCPU Zen 4 machine kind (../shared/performance.md).
LLAMA = {
    "f32": {"pp512/1": 77, "pp512/2": 135, "tg128/1": 8.9, "tg128/2": 15.5},
    "bf16": {"pp512/1": 136, "pp512/2": 211, "tg128/1": 20.8, "tg128/2": 29.3},
    "q8": {"pp512/1": 97, "pp512/2": 172, "tg128/1": 28.3, "tg128/2": 39.0},
    "q4": {"pp512/1": 115, "pp512/2": 196, "tg128/1": 47.7, "tg128/2": 64.0},
}
PANELS = ["pp512/1", "pp512/2", "tg128/1", "tg128/2"]
TITLES = {"pp512/1": "prefill pp512, 1 thread", "pp512/2": "prefill pp512, 2 threads",
          "tg128/1": "decode tg128, 1 thread", "tg128/2": "decode tg128, 2 threads"}
OURS_COLOR, PEER_COLOR = "#2b6cb0", "#a0aec0"


def ours(bench):
    table = {}
    for row in bench:
        precision = row["weights"].split()[0]
        table.setdefault(precision, {})[f"{row['test']}/{row['n_threads']}"] = (
            row["avg_ts"], row["stddev_ts"])
    return table


def panel(x0, y0, w, h, key, measured):
    precisions = [p for p in LLAMA if p in measured]
    top = max(max(LLAMA[p][key], measured[p].get(key, (0, 0))[0]) for p in precisions) * 1.15
    out = [f'<text x="{x0 + w / 2}" y="{y0 - 8}" text-anchor="middle" font-weight="bold">'
           f'{TITLES[key]} (tokens/s)</text>',
           f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="#333"/>']
    slot = w / len(precisions)
    bar = slot * 0.32
    for i, p in enumerate(precisions):
        cx = x0 + slot * (i + 0.5)
        for value, err, color, dx in ((LLAMA[p][key], 0, PEER_COLOR, -bar),
                                      (*measured[p].get(key, (0, 0)), OURS_COLOR, 0)):
            bh = h * value / top
            out.append(f'<rect x="{cx + dx:.1f}" y="{y0 + h - bh:.1f}" width="{bar:.1f}" '
                       f'height="{bh:.1f}" fill="{color}"/>')
            out.append(f'<text x="{cx + dx + bar / 2:.1f}" y="{y0 + h - bh - 4:.1f}" '
                       f'text-anchor="middle" font-size="10">{value:.0f}</text>'
                       if value >= 20 else
                       f'<text x="{cx + dx + bar / 2:.1f}" y="{y0 + h - bh - 4:.1f}" '
                       f'text-anchor="middle" font-size="10">{value:.1f}</text>')
            if err:
                e = h * err / top
                out.append(f'<line x1="{cx + dx + bar / 2:.1f}" y1="{y0 + h - bh - e:.1f}" '
                           f'x2="{cx + dx + bar / 2:.1f}" y2="{y0 + h - bh + e:.1f}" '
                           f'stroke="#000"/>')
        out.append(f'<text x="{cx:.1f}" y="{y0 + h + 14}" text-anchor="middle">{p}</text>')
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=pathlib.Path, required=True, help="tinyllm bench --json")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--caption", default="")
    args = parser.parse_args()
    measured = ours(json.loads(args.bench.read_text()))
    width, height, pw, ph = 900, 560, 380, 180
    body = []
    for n, key in enumerate(PANELS):
        body += panel(60 + (n % 2) * 450, 60 + (n // 2) * 250, pw, ph, key, measured)
    legend_y = height - 30
    body += [f'<rect x="60" y="{legend_y - 10}" width="12" height="12" fill="{PEER_COLOR}"/>',
             f'<text x="78" y="{legend_y}">llama.cpp b4748 (../shared/performance.md)</text>',
             f'<rect x="420" y="{legend_y - 10}" width="12" height="12" fill="{OURS_COLOR}"/>',
             f'<text x="438" y="{legend_y}">tiny-llm.cpp engine (mean ± 1 sd)</text>']
    if args.caption:
        body.append(f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle" '
                    f'font-size="11">{args.caption}</text>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">\n'
           f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")
    args.out.write_text(svg)


if __name__ == "__main__":
    main()
