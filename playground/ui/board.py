"""Leaderboard and Data tabs: ratings with intervals, the win-rate matrix, thumbs-up rates, recent feedback and
the exports, drawn as plain HTML (readable on a projector, no plotting library)."""

from __future__ import annotations

import atexit
import functools
import html
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from playground.errors import FeedbackError
from playground.feedback.export import FORMATS, build, write_jsonl
from playground.feedback.ratings import Leaderboard, leaderboard
from playground.ui.i18n import t

STYLE = "font-family: system-ui, sans-serif; font-size: 1rem; border-collapse: collapse;"


def ratings_html(board: Leaderboard) -> str:
    if not board.ratings:
        return "<p>No blind comparisons yet: vote in the Arena. / まだブラインド比較がありません。アリーナで投票してください。</p>"
    low = min(r.low for r in board.ratings) - 20
    span = max(r.high for r in board.ratings) - low + 20
    rows = []
    for rank, r in enumerate(board.ratings, start=1):
        left, width = (r.low - low) / span * 100, (r.high - r.low) / span * 100
        point = (r.rating - low) / span * 100
        bar = (
            f"<div style='position:relative;height:18px;background:#f3f4f6;border-radius:4px'>"
            f"<div style='position:absolute;left:{left:.1f}%;width:{max(width, 0.5):.1f}%;top:7px;height:4px;"
            f"background:#93c5fd'></div><div style='position:absolute;left:calc({point:.1f}% - 6px);top:3px;"
            f"width:12px;height:12px;border-radius:6px;background:#1d4ed8'></div></div>"
        )
        rows.append(
            f"<tr><td style='padding:4px 8px'>{rank}</td><td style='padding:4px 8px'><b>{html.escape(r.variant)}</b>"
            f"</td><td style='padding:4px 8px;text-align:right'>{r.rating:.0f}</td><td style='padding:4px 8px;"
            f"color:#555'>{r.low:.0f}–{r.high:.0f}</td><td style='padding:4px 8px;width:45%'>{bar}</td>"
            f"<td style='padding:4px 8px;color:#555'>{r.games} games</td></tr>"
        )
    note = f"{board.comparisons} blind comparisons; {board.not_blind} not blind, left out."
    return f"<table style='{STYLE};width:100%'>{''.join(rows)}</table><p style='color:#555'>{note}</p>"


def win_rates_html(board: Leaderboard) -> str:
    names = list(board.win_rates)
    if not names:
        return ""
    head = "".join(f"<th style='padding:6px'>{html.escape(n)}</th>" for n in names)
    body = []
    for a in names:
        cells = []
        for b in names:
            rate = None if a == b else board.win_rates[a][b]
            if rate is None:
                cells.append("<td style='padding:6px;text-align:center;color:#999'>–</td>")
            else:  # blue when the row wins, red when it loses
                color = f"rgba(29,78,216,{rate:.2f})" if rate >= 0.5 else f"rgba(220,38,38,{1 - rate:.2f})"
                text = "white" if abs(rate - 0.5) > 0.25 else "black"
                cells.append(f"<td style='padding:6px;text-align:center;background:{color};color:{text}'>"
                             f"{rate:.0%}</td>")
        body.append(f"<tr><th style='padding:6px;text-align:left'>{html.escape(a)}</th>{''.join(cells)}</tr>")
    return f"<table style='{STYLE}'><tr><th></th>{head}</tr>{''.join(body)}</table>"


def thumbs_html(board: Leaderboard) -> str:
    if not board.thumbs:
        return "<p>No thumbs yet. / まだ評価がありません。</p>"
    rows = "".join(
        f"<tr><td style='padding:4px 8px'><b>{html.escape(v)}</b></td><td style='padding:4px 8px;width:50%'>"
        f"<div style='background:#fee2e2;border-radius:4px'><div style='width:{x['rate'] * 100:.0f}%;height:16px;"
        f"background:#16a34a;border-radius:4px'></div></div></td><td style='padding:4px 8px'>{x['rate']:.0%} "
        f"({x['up']} 👍 / {x['down']} 👎)</td></tr>"
        for v, x in board.thumbs.items()
    )
    return f"<table style='{STYLE};width:100%'>{rows}</table>"


def leaderboard_tab(store) -> None:
    refresh = gr.Button(t("refresh"), size="sm")
    gr.Markdown(t("ratings"))
    ratings = gr.HTML()
    gr.Markdown(t("win_rates"))
    matrix = gr.HTML()
    gr.Markdown(t("thumbs"))
    thumbs = gr.HTML()

    def show():
        if store is None:
            return "<p>No feedback database is open.</p>", "", ""
        board = leaderboard(store)
        return ratings_html(board), win_rates_html(board), thumbs_html(board)

    refresh.click(show, outputs=[ratings, matrix, thumbs], api_name="leaderboard")
    return show, [ratings, matrix, thumbs]


def data_tab(store) -> None:
    refresh = gr.Button(t("refresh"), size="sm")
    gr.Markdown(t("usable"))
    counts = gr.Markdown()
    with gr.Row():
        downloads = [gr.DownloadButton(f"{fmt}.jsonl", size="sm") for fmt in FORMATS]
    gr.Markdown(t("recent"))
    recent = gr.Dataframe(
        headers=["id", "time", "variant", "prompt", "answer", "👍", "👎", "ideal answers"],
        interactive=False, wrap=True,
    )
    @functools.cache  # made on the first refresh, once: an app killed before any refresh leaves no folder behind
    def export_folder() -> Path:
        folder = Path(tempfile.mkdtemp(prefix="playground-exports-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        return folder

    def show():
        if store is None:
            return "No feedback database is open.", [], *[None] * len(FORMATS)
        lines, files, folder = [], [], export_folder()
        for fmt in FORMATS:
            export = build(store, fmt)
            lines.append(f"- **{fmt}**: {export.report()}")
            path = folder / f"{fmt}.jsonl"
            try:
                write_jsonl(export.rows, path)
                files.append(str(path))
            except FeedbackError as exc:  # e.g. a full disk: say so, keep the rest of the tab working
                lines.append(f"  - ⚠️ {exc}. Free some disk space and press Refresh / "
                             "ディスクの空きを作って「更新」を押してください")
                files.append(None)
        rows = store.query(
            """
            SELECT g.id, substr(g.created_at, 12, 8) AS time, g.variant, g.prompt, substr(g.response, 1, 200),
                   (SELECT count(*) FROM current_votes v WHERE v.generation_id = g.id AND v.value > 0),
                   (SELECT count(*) FROM current_votes v WHERE v.generation_id = g.id AND v.value < 0),
                   (SELECT count(*) FROM corrections c WHERE c.generation_id = g.id)
            FROM generations g ORDER BY g.id DESC LIMIT 30
            """
        )
        return "\n".join(lines), [list(r.values()) for r in rows], *files

    refresh.click(show, outputs=[counts, recent, *downloads], api_name=False)
    return show, [counts, recent, *downloads]
