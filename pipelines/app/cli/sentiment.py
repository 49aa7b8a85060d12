"""``alphaops sentiment``: train the MiniLM headline-sentiment head, and a synthetic labelled set."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.app.cli.common import app, CliError, check_symbol, console, load_settings, out, print_json, utc_now

sentiment_app = typer.Typer(no_args_is_help=True, help="Headline sentiment: the MiniLM head (optional 'text' extra).")
app.add_typer(sentiment_app, name="sentiment")


@sentiment_app.command("train-head")
def train_head(
    holdout: float = typer.Option(0.3, "--holdout", help="Share of the labelled headlines held out, the latest by time."),
    c: float = typer.Option(1.0, "--C", help="Inverse L2 strength of the logistic head."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Train a head on the labelled headlines; adopt it only if it beats VADER on the held-out ones."""
    from models.sentiment_head import HeadRejected
    from pipelines.steps.sentiment_head import train_sentiment_head

    if not 0 < holdout < 1:
        raise CliError(f"--holdout {holdout} must be between 0 and 1")
    settings = load_settings()
    try:
        with console.status("embedding labelled headlines and fitting the head…"):
            result = train_sentiment_head(settings, as_of=utc_now(), holdout_fraction=holdout, C=c)
    except HeadRejected as exc:
        if as_json:
            print_json({"adopted": False, "head": exc.evaluation.head, "vader": exc.evaluation.vader,
                        "n_test": exc.evaluation.n_test})
        console.print(f"[red]refused:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        print_json(result)
        return
    head, vader = result["head"], result["vader"]
    out.print(f"adopted {result['scorer']} ({result['n_train']} headlines to train, {result['n_test']} held out "
              f"from {result['split_ts']}):\n"
              f"  macro-F1 {head['macro_f1']:.3f} vs VADER {vader['macro_f1']:.3f}; accuracy {head['accuracy']:.3f} "
              f"vs {vader['accuracy']:.3f}; Spearman {head['spearman']:.3f} vs {vader['spearman']:.3f}\n"
              f"  ONNX parity {result['parity_max_abs_diff']:.1e}; set ALPHAOPS_NEWS_SCORER=minilm to use it")


@sentiment_app.command("synth-labels")
def synth_labels(
    file: Path = typer.Argument(..., help="CSV to write (ts, symbol, headline, source, label)."),
    symbol: str = typer.Option("SYNNEWS", "--symbol"),
    seed: int = typer.Option(3, "--seed", help="The built-in SYNNEWS source's seed by default: the same headlines."),
    bars: int = typer.Option(20_000, "--bars", help="Minute bars of the synthetic news market (~1 headline per 20)."),
) -> None:
    """Write the synthetic news market's headlines labelled by their latent tone (template-made: easy to learn).

    With the defaults they are the built-in SYNNEWS source's headlines, so ingesting the file
    labels the headlines `alphaops run --symbols SYNNEWS` stored (same ids: rows_changed)."""
    from pipelines.ingest.synthetic_news import NewsMarket, labelled_headlines

    check_symbol(symbol)
    if file.exists():
        raise CliError(f"{file} exists; give a new file")
    _, _, headlines = NewsMarket(seed=seed, n_bars=bars).generate()
    frame = labelled_headlines(headlines, symbol)
    frame.to_csv(file, index=False)
    out.print(f"wrote {len(frame)} labelled headlines to {file}; ingest with: alphaops ingest {file} --kind news")
