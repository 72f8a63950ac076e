"""`python -m playground <command>`: a thin layer of argument parsing over the services."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

from playground.config import DEVICES, DTYPES, Settings, build_lineup, default_cache_dir
from playground.errors import ConfigError, PlaygroundError
from playground.feedback.export import FORMATS, SPLITS
from playground.prompting.banks import DEFAULT_FOLDER, LANGS, Bank, load_banks
from playground.prompting.modes import MODES, PromptSpec, build_prompt
from playground.training.own_answers import PROBE_SETS

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"
BENCHMARKS = ("generation", "training", "load")


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout carries only the command's answer."""
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except PlaygroundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--config", type=Path,
                       help="lineup TOML file (default: base, instruct, rlhf and every other version in adapters/)")
    model.add_argument("--base", help="base model: 'default', a model folder, a .gguf file, or a hub id")
    model.add_argument("--dtype", choices=DTYPES, help="weights' dtype (default bfloat16)")
    model.add_argument("--device", choices=DEVICES, help="auto, cpu or cuda (default auto)")
    model.add_argument(
        "--cache-dir", type=Path, default=None, help="where converted models are cached ($PLAYGROUND_CACHE_DIR)"
    )

    prompting = argparse.ArgumentParser(add_help=False)
    prompting.add_argument("--task", help="example bank (task id), e.g. sentiment, arithmetic")
    prompting.add_argument("--k", type=int, default=3, help="worked examples in few-shot modes (default 3)")
    prompting.add_argument("--lang", choices=LANGS, default="en", help="language of instruction and examples")
    prompting.add_argument("--banks", type=Path, default=DEFAULT_FOLDER, help="folder of example banks (data/banks)")

    parser = argparse.ArgumentParser(prog="python -m playground", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[model], help="start the web app")
    serve.add_argument("--db", type=Path, help="feedback database file (default ./feedback.db)")
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=7860, help="listen port (default 7860)")
    serve.add_argument("--adapters", type=Path, default=Path("adapters"),
                       help="adapters folder: the default lineup's adapters, and where trained versions go")
    serve.add_argument("--room-password", default=os.environ.get("PLAYGROUND_ROOM_PASSWORD"),
                       help="participants sign in with their name and this; needed beyond 127.0.0.1 "
                            "($PLAYGROUND_ROOM_PASSWORD)")
    serve.add_argument("--admin-password", default=os.environ.get("PLAYGROUND_ADMIN_PASSWORD"),
                       help="training and cancelling need this ($PLAYGROUND_ADMIN_PASSWORD); in a workshop, "
                            "without it training is off")
    serve.add_argument("--share", action="store_true",
                       help="also serve through a public gradio.live link (needs internet; anyone with the link)")
    serve.set_defaults(run=serve_command)

    generate = commands.add_parser(
        "generate", parents=[model, prompting], help="print one variant's answer to a prompt"
    )
    generate.add_argument("--variant", default="base", help="variant name from the lineup (default base)")
    generate.add_argument("--mode", choices=MODES, default="zero", help="prompting mode (default zero)")
    generate.add_argument("--show-prompt", action="store_true", help="print the exact prompt to stderr first")
    generate.add_argument("--max-new-tokens", type=int, default=128)
    generate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--top-k", type=int, default=0)
    generate.add_argument("--repetition-penalty", type=float, default=1.0)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--stop", action="append", default=[], help="a string that ends the answer (repeatable)")
    generate.add_argument("--best-of", type=int, default=1, metavar="N",
                          help="sample N answers and print the one the lineup's reward model scores highest")
    generate.add_argument("prompt", help="the user's message")
    generate.set_defaults(run=generate_command)

    evaluate = commands.add_parser(
        "eval-prompting", parents=[model, prompting], help="score prompting modes on a bank's held-out items"
    )
    evaluate.add_argument("--modes", default="zero,one,few,cot", help="comma-separated modes (default zero,one,few,cot)")
    evaluate.add_argument("--variant", default="base", help="variant name from the lineup (default base)")
    evaluate.add_argument("--limit", type=int, help="use only the first N test items")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object (the only output format)")
    evaluate.add_argument("--details", type=Path, help="also write every prompt, output and score to this JSONL file")
    evaluate.set_defaults(run=eval_prompting_command)

    evals = commands.add_parser("eval", help="measure variants").add_subparsers(dest="suite", required=True)
    defaults = evals.add_parser(
        "defaults", parents=[model],
        help="what instruct and rlhf changed, on held-out slices of data/sft and data/preferences",
    )
    defaults.add_argument("--variants", default="base,instruct,rlhf",
                          help="comma-separated (default base,instruct,rlhf)")
    defaults.add_argument("--limit", type=int, help="use only the first N items of each task, for a quick look")
    defaults.add_argument("--split", choices=("test", "dev"), default="test",
                          help="test (default): the held-out slices; dev: the items for choosing between candidate "
                               "builds, so that test stays unseen until one is chosen")
    defaults.add_argument("--json", action="store_true", help="print one JSON object (the only output format)")
    defaults.add_argument("--details", type=Path, help="also write every prompt and answer to this JSON file")
    defaults.set_defaults(run=eval_defaults_command)

    export = commands.add_parser("export", help="write feedback as training data in TRL's formats")
    export.add_argument("--db", type=Path, help="feedback database file (default ./feedback.db)")
    export.add_argument("--format", choices=FORMATS, required=True, help="dpo, kto, reward or sft")
    export.add_argument("--out", type=Path, required=True, help="the JSON Lines file to write")
    export.add_argument("--split", choices=SPLITS, help="only the train or the held-out test prompts")
    export.set_defaults(run=export_command)

    board = commands.add_parser("leaderboard", help="ratings from blind comparisons, and thumbs-up rates")
    board.add_argument("--db", type=Path, help="feedback database file (default ./feedback.db)")
    board.add_argument("--json", action="store_true", help="print one JSON object")
    board.set_defaults(run=leaderboard_command)

    train = commands.add_parser("train", parents=[model], help="train a new adapter version from feedback")
    train.add_argument("kind", choices=("dpo", "kto", "sft", "reward", "decision"),
                       help="dpo (preference pairs), kto (thumbs up and down), sft (ideal and upvoted answers), "
                            "reward (a reward model from preference pairs: scores answers, enables best-of-n) or "
                            "decision (data/ only: on top of a finished adapter, a probe read once per turn decides to "
                            "refuse harmful requests and answer look-alikes)")
    train.add_argument("--db", type=Path, help="feedback database file (default ./feedback.db)")
    start = train.add_mutually_exclusive_group()
    start.add_argument("--from", dest="parent", type=Path,
                       help="adapter folder to continue from, the reference policy (default for dpo and kto: the "
                            "shipped SFT adapter, ADAPTERS/sft/v1, when there is one; for decision, "
                            "ADAPTERS/rlhf/v1)")
    start.add_argument("--fresh", action="store_true", help="train a fresh LoRA on the base instead")
    train.add_argument("--name", default="rlhf", help="adapter name: versions go to adapters/NAME/vN (default rlhf)")
    train.add_argument("--adapters", type=Path, default=Path("adapters"), help="adapters folder (default adapters)")
    train.add_argument("--steps", type=int, help="optimizer steps (default 40; decision 176)")
    train.add_argument("--lr", type=float,
                       help="learning rate (default: 5e-5 for dpo and kto, 2e-4 for sft, 1e-4 for reward, 4e-3 for "
                            "decision)")
    train.add_argument("--beta", type=float, default=0.1, help="DPO/KTO beta (default 0.1)")
    train.add_argument("--precompute-ref", action="store_true", help="compute reference log-probs once, up front")
    train.add_argument("--sft-weight", type=float, default=0.0,
                       help="dpo: add the chosen answers' language-model loss with this weight (RPO; default 0)")
    train.add_argument("--own-answers", nargs="?", const="all", default="", choices=tuple(PROBE_SETS),
                       metavar="WHICH",
                       help="dpo: also pair the starting policy's own wrong answers to the project's training harmful "
                            "requests and look-alikes (rejected) with the written ones (on-policy pairs); WHICH: all "
                            "(the default), balanced (all, with per language no more pairs against declined "
                            "look-alikes than against compliances), harmful (harmful requests only) or harmful-ja "
                            "(Japanese ones only)")
    train.add_argument("--layers", type=layer_list, metavar="N,N",
                       help="decision: the decoder layers whose down_proj output the decision writes to (default 7,17; "
                            "the probe reads layer 7)")
    train.add_argument("--4bit", dest="quantize_4bit", action="store_true",
                       help="QLoRA: hold the frozen base in 4-bit NF4 (bitsandbytes) to save memory")
    seed = train.add_mutually_exclusive_group()
    seed.add_argument("--include-seed", action="store_true",
                      help="mix in the project's own data (data/sft for sft, data/preferences otherwise)")
    seed.add_argument("--seed-only", action="store_true", help="train on the project's own data alone (make adapters)")
    train.set_defaults(run=train_command)

    bench = commands.add_parser("bench", parents=[model], help="run a benchmark and print its results")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("--json", action="store_true", help="print one JSON object (the only output format)")
    bench.add_argument("--tokens", type=int, default=64, help="tokens to generate per measurement")
    bench.add_argument("--participants", type=int, default=30, help="load: simulated participants (default 30)")
    bench.add_argument("--prompts", type=int, default=10, help="load: prompts each (default 10)")
    bench.set_defaults(run=bench_command)
    return parser


def layer_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give layer numbers separated by commas, e.g. 6,7,17") from None


def settings_from(args: argparse.Namespace) -> Settings:
    lineup = build_lineup(args.config, args.base, args.dtype, args.device,
                          adapters_root=getattr(args, "adapters", None) or Path("adapters"))
    extra = {k: getattr(args, k) for k in ("host", "port") if hasattr(args, k)}
    db = getattr(args, "db", None) or lineup.feedback_db or Path("feedback.db")
    return Settings(lineup=lineup, cache_dir=args.cache_dir or default_cache_dir(), db=db, **extra)


def serve_command(args: argparse.Namespace) -> int:
    from playground.feedback import FeedbackStore
    from playground.models.runtime import Runtime
    from playground.ui.app import QUEUE, build_app, launch_options
    from playground.ui.loading import ModelLoading
    from playground.ui.access import Access
    from playground.ui.train import TrainingPlace

    settings = settings_from(args)
    access = Access.for_host(settings.host, args.room_password, args.admin_password)
    if args.share and access.room_password is None:
        raise ConfigError("--share puts the playground on the internet: set a room password as well (--room-password)")
    log(settings.describe())
    banks = load_banks()  # a malformed bank stops the start with its file and line
    store = FeedbackStore(settings.db)  # likewise a feedback.db that cannot be used
    # The page is served at once and says the model is loading; the first start converts it (about a minute).
    loading = ModelLoading.start(lambda: Runtime.from_lineup(settings.lineup, settings.cache_dir, log))
    place = TrainingPlace(settings.db, settings.lineup.source, settings.lineup.dtype, settings.cache_dir, args.adapters)
    app = build_app(loading, settings.lineup, banks, store, place, access)
    app.queue(**QUEUE).launch(
        server_name=settings.host, server_port=settings.port, show_error=False, quiet=True,
        prevent_thread_lock=True, share=args.share, **launch_options(), **access.launch_options(),
    )
    log(f"open http://{settings.host}:{settings.port} in a browser (Ctrl+C stops)")
    if access.workshop:
        log("workshop mode: participants sign in with their name and the room password"
            + ("" if access.admin_password else "; training is off (no --admin-password)"))
    if args.share:
        log(f"WARNING: anyone with this link can use the playground and see its data: {app.share_url}")
    try:
        loading.future.result()  # a model that cannot be loaded ends the program with its message
    except PlaygroundError:
        app.close()
        raise
    app.block_thread()
    return 0


def generate_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from playground.models.generation import SamplingSettings, best_of_n, generate_one
    from playground.models.runtime import Runtime
    from playground.prompting.formats import render_gemma_chat
    from playground.prompting.inputs import clean_message

    settings = settings_from(args)
    variant = settings.lineup.variant(args.variant)
    bank = find_bank(args.banks, args.task) if args.task else None
    message = clean_message(args.prompt)
    prompt = build_prompt(PromptSpec(mode=args.mode, k=args.k, lang=args.lang), bank, message, variant.format)
    # load only the adapter this answer needs, and the reward model only for best-of-n
    lineup = replace(settings.lineup, variants=(variant,), reward=settings.lineup.reward if args.best_of > 1 else None)
    sampling = SamplingSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        stop=tuple(args.stop),
    ).validate()
    if args.best_of > 1 and lineup.reward is None:
        raise ConfigError("--best-of needs a reward model: train one (`train reward`), or name it in the lineup file")
    runtime = Runtime.from_lineup(lineup, settings.cache_dir, log)
    if args.show_prompt:
        log(f"--- prompt ---\n{prompt}\n--- answer ---")
    adapter = variant.name if variant.adapter else None
    if args.best_of > 1:
        judged = render_gemma_chat([{"role": "user", "content": message}])
        pick = best_of_n(runtime, prompt, adapter, args.best_of, judged, sampling)
        log(f"rewards of the {args.best_of} samples: " + ", ".join(f"{s:+.2f}" for s in pick.scores))
        print(pick.best.text)
        return 0
    print(generate_one(runtime, prompt, adapter, sampling).text)
    return 0


def find_bank(folder: Path, task: str) -> Bank:
    banks = load_banks(folder)
    if task not in banks:
        raise ConfigError(f"no example bank {task!r} in {folder}; available: {', '.join(banks) or 'none'}")
    return banks[task]


def eval_prompting_command(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from playground.evaluation import evaluate
    from playground.models.runtime import Runtime

    if not args.task:
        raise ConfigError("eval-prompting needs --task; e.g. --task sentiment")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ConfigError(f"--modes {args.modes!r}: unknown {', '.join(unknown) or 'empty list'}; use {', '.join(MODES)}")
    settings = settings_from(args)
    variant = settings.lineup.variant(args.variant)
    bank = find_bank(args.banks, args.task)
    for mode in modes:  # refuse a too-large k before loading the model
        build_prompt(PromptSpec(mode=mode, k=args.k, lang=args.lang), bank, "", variant.format)
    runtime = Runtime.from_lineup(replace(settings.lineup, variants=(variant,), reward=None), settings.cache_dir, log)
    results = evaluate(runtime, variant, bank, modes, args.lang, args.k, args.limit, log)
    if args.details:
        with args.details.open("w", encoding="utf-8") as out:
            for mode, result in results.items():
                for example in result.examples:
                    out.write(json.dumps({"mode": mode, **example}, ensure_ascii=False) + "\n")
    report = {
        "task": bank.task,
        "variant": variant.name,
        "model": runtime.model_id,
        "lang": args.lang,
        "k": args.k,
        "modes": {mode: {"accuracy": r.accuracy, "n": r.n} for mode, r in results.items()},
    }
    print(json.dumps(report, ensure_ascii=False))
    return 0


def eval_defaults_command(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from playground.alignment_eval import evaluate_defaults
    from playground.models.runtime import Runtime

    settings = settings_from(args)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    variants = [settings.lineup.variant(n) for n in names]  # an unknown name lists the lineup
    lineup = replace(settings.lineup, variants=tuple(variants), reward=None)
    runtime = Runtime.from_lineup(lineup, settings.cache_dir, log)
    report = evaluate_defaults(runtime, variants, args.limit, log, split=args.split)
    answers = report.pop("answers")
    if args.details:
        args.details.write_text(json.dumps(answers, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False))
    return 0


def export_command(args: argparse.Namespace) -> int:
    from playground.feedback import FeedbackStore
    from playground.feedback.export import build, write_jsonl

    store = FeedbackStore(args.db or Path("feedback.db"), read_only=True)
    export = build(store, args.format, args.split)
    write_jsonl(export.rows, args.out)
    print(f"{args.out}: {export.report()}")
    return 0


def leaderboard_command(args: argparse.Namespace) -> int:
    import json

    from playground.feedback import FeedbackStore
    from playground.feedback.ratings import leaderboard

    board = leaderboard(FeedbackStore(args.db or Path("feedback.db"), read_only=True))
    if args.json:
        print(json.dumps(board.as_dict(), ensure_ascii=False))
        return 0
    print(f"Ratings from {board.comparisons} blind comparisons ({board.not_blind} not blind, left out):")
    for rank, r in enumerate(board.ratings, start=1):
        print(f"{rank:>3}. {r.variant:<24} {r.rating:7.1f}  95% {r.low:.0f}-{r.high:.0f}  ({r.games} games)")
    if board.win_rates:
        names = list(board.win_rates)
        print("\nWin rate of row against column:")
        print(" " * 24 + "".join(f"{n[:10]:>11}" for n in names))
        for a in names:
            cells = ["-" if a == b else ("" if board.win_rates[a][b] is None else f"{board.win_rates[a][b]:.0%}")
                     for b in names]
            print(f"{a:<24}" + "".join(f"{c:>11}" for c in cells))
    print("\nThumbs up:")
    for variant, t in board.thumbs.items():
        print(f"     {variant:<24} {t['rate']:.0%} ({t['up']} up, {t['down']} down)")
    if not board.thumbs:
        print("     no votes yet")
    return 0


def train_command(args: argparse.Namespace) -> int:
    from playground.feedback import FeedbackStore
    from playground.training.jobs import JobSpec, Jobs

    settings = settings_from(args)
    # preference training starts from the instruction-tuned policy; the decision step from the finished one
    start = {"dpo": "sft", "kto": "sft", "decision": "rlhf"}.get(args.kind)
    shipped = args.adapters / start / "v1" if start else None
    if args.parent is None and not args.fresh and shipped and shipped.is_dir():
        args.parent = shipped
        fresh = "" if args.kind == "decision" else ", --fresh for a new LoRA"
        log(f"continuing from {shipped} (--from to choose another{fresh})")
    if args.kind == "decision" and args.quantize_4bit:
        raise ConfigError("--4bit: train decision holds the base in float32 (it compares log-probabilities to a "
                          "fraction of a nat); leave --4bit out")
    if args.parent is not None and not (args.parent / "adapter_config.json").is_file():
        raise ConfigError(f"--from {args.parent}: not an adapter folder (no adapter_config.json)")
    spec = JobSpec(
        kind=args.kind, db=str(settings.db), source=settings.lineup.source, dtype=settings.lineup.dtype,
        cache_dir=str(settings.cache_dir), adapters_root=str(args.adapters), name=args.name,
        parent=str(args.parent) if args.parent else None,
        settings={**({"steps": args.steps} if args.steps else {}), **({"learning_rate": args.lr} if args.lr else {}),
                  **({"quantize_4bit": True} if args.quantize_4bit else {}),
                  **({"beta": args.beta} if args.kind in ("dpo", "kto") else {}),
                  **({"precompute_ref": args.precompute_ref, "sft_weight": args.sft_weight,
                      "own_answers": args.own_answers} if args.kind == "dpo" else {}),
                  **({"layers": args.layers} if args.layers and args.kind == "decision" else {})},
        data="seed" if args.seed_only else "feedback+seed" if args.include_seed else "feedback",
    )
    jobs = Jobs(FeedbackStore(settings.db))
    run_id = jobs.start(spec)
    log(f"training run #{run_id} started (process {jobs.process.pid}); Ctrl+C cancels it")
    shown = 0
    try:
        while True:
            run = jobs.wait(timeout=1.0)
            for step in run["metrics"][shown:]:
                log("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in step.items()))
            shown = len(run["metrics"])
            if run["status"] != "running":
                break
    except KeyboardInterrupt:
        jobs.cancel()
        log(f"training run #{run_id} cancelled; no version was published")
        return 130
    if run["status"] != "done":
        raise PlaygroundError(f"training run #{run_id} {run['status']}: {run['message']}")
    print(run["folder"])
    return 0


def bench_command(args: argparse.Namespace) -> int:
    program = BENCH_DIR / f"{args.name}.py"
    if not program.is_file():
        raise PlaygroundError(f"{program} is missing; run benchmarks from a checkout of the repository")
    main = runpy.run_path(str(program))["main"]
    if args.name == "load":  # its own tiny model: the server is what it measures
        return main(log=log, participants=args.participants, prompts=args.prompts)
    return main(settings_from(args), tokens=args.tokens, log=log)
