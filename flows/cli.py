"""`rollout`: the one command that starts the flows and prints what they did.

Exit codes: see flows/errors.py (`bounces`: 1 when some messages stay unparsed). Bad input
(brand.toml, brand names, numbers, the ROLLOUT_* environment, paths) is checked before any flow
starts: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import flows  # noqa: F401 - sets the embedded Prefect defaults before Prefect is imported
from rollout.settings import Settings, load_settings
from rollout.transports import URL_OPTIONS

if TYPE_CHECKING:
    from rollout.brands import Brand

EXAMPLES = """
examples:
  rollout run --exports data/samples            PINs, write-back and e-mails (Maildir outbox)
  rollout pins --brand congstar --exports DIR    only the PIN stage, one brand
  rollout preview --brand jamobil --exports DIR  render the e-mails for review, send nothing
  ROLLOUT_TRANSPORT=smtp+starttls://mail.example.com:587 rollout notify --rate 50
  rollout resend --brand congstar --exports newer-exports/
  rollout bounces /var/mail/bounces/ bounced.csv
  rollout bounces --dry-run --json /var/mail/bounces/   what each bounce means, change nothing
  rollout status --json
  rollout plan --today 2022-05-02 --rate 50     will everyone be mailed before the mandatory date?
"""


# Commands that run the core directly: no Prefect import, no temporary server.
WITHOUT_PREFECT = frozenset({"status", "plan", "unreachable", "unlock", "keys"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from flows.errors import run_reporting_errors
    from flows.logs import quiet_reported_errors
    from rollout.shutdown import interruptible

    def checked_then_run() -> int:
        check_input(args)  # typos and bad settings: one line, exit 2, before anything is done
        if needs_prefect(args):
            quiet_reported_errors()
        return cast(int, args.handler(args))

    with interruptible():  # a signal unwinds: locks released, the temporary server stopped
        return run_reporting_errors(checked_then_run, _state_db(args))


def _state_db(a: argparse.Namespace) -> str | None:
    """The state DB as error messages name it (no password), if the command has one."""
    from rollout.state.connect import describe, state_url

    if not hasattr(a, "state_dir"):
        return None
    try:
        return describe(state_url(a.state_dir, a.state_url or os.environ.get("ROLLOUT_STATE_URL")))
    except Exception:  # a URL that does not parse is reported by the settings check
        return None


def needs_prefect(a: argparse.Namespace) -> bool:
    """A preview without a Prefect server runs the core directly: no temporary server. Only
    recording bounces is a flow (a dry run and clearing sender problems are not)."""
    if a.command == "preview":
        return bool(os.environ.get("PREFECT_API_URL"))
    if a.command == "bounces":
        return bool(a.paths) and not a.dry_run
    return a.command not in WITHOUT_PREFECT


def check_input(a: argparse.Namespace) -> None:
    """What every command checks first: the brands named exist, the paths given are there, and
    the environment's settings are valid."""
    from rollout.brands import load_brand, load_brands
    from rollout.settings import SettingsError

    if hasattr(a, "brands"):  # every brand.toml the command will read, validated
        load_brands(a.brands)
    if getattr(a, "brand", None):
        load_brand(a.brand)
    if getattr(a, "paths", None):  # bounce files: a typo must not look like "nothing bounced"
        from rollout.bounces import MissingPath, check_paths

        try:
            check_paths(a.paths)
        except MissingPath as error:
            raise SettingsError(str(error)) from None
    settings(a)


def settings(a: argparse.Namespace) -> Settings:
    """The command's flags, then the ROLLOUT_* environment, then the defaults; validated. What
    the flows take as their parameter `settings`."""
    return load_settings(**{k: v for k, v in vars(a).items() if k in Settings.model_fields})


def _default(name: str) -> object:
    """A setting's default, for the flags and their --help (the one home is Settings)."""
    return Settings.model_fields[name].default


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line (and exit 2), like every other refusal of the command."""

    def error(self, message: str) -> typing.NoReturn:
        command = self.prog.removeprefix("rollout").strip()
        where = f"{command}: " if command else ""
        hint = " ".join(("rollout", command, "--help")).replace("  ", " ")
        self.exit(2, f"rollout: error: {where}{message} (see {hint})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="rollout",
        description="Assign, hash and announce the mandatory Legi-PIN for every brand.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, options, handler in _COMMANDS:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        for add in options:
            add(sub)
        sub.set_defaults(handler=handler)
    return parser


# --- option groups ------------------------------------------------------------------------


def _brands(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--brand",
        action="append",
        dest="brands",
        metavar="B",
        help="brand folder name under templates/ (repeatable; default: every brand)",
    )


def _state(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        type=Path,
        default=_default("state_dir"),
        help="write-back, rejects, reports, outbox, locks and (by default) the state DB "
        f"(default: {_default('state_dir')})",
    )
    p.add_argument(
        "--state-url",
        metavar="URL",
        help="the state DB: sqlite:///PATH or postgresql://[USER@]HOST[:PORT]/DB (default: "
        "$ROLLOUT_STATE_URL, else sqlite:///<state-dir>/state.sqlite3); the password only "
        "from $PGPASSWORD, libpq's password or service file, or $ROLLOUT_STATE_PASSWORD",
    )


def _exports(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--exports",
        type=Path,
        help="folder with one <brand>.csv per brand (default: $ROLLOUT_EXPORTS; required)",
    )


def _pins(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dask-address",
        metavar="tcp://HOST:PORT",
        help="hash on this existing Dask cluster instead of local threads",
    )
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        help=f"customers per unit of work (default {_default('chunk_size')})",
    )
    p.add_argument(
        "--unpeppered",
        action="store_true",
        help="hash without a pepper (a leaked hash then gives its PIN away); default: refuse",
    )


def _sending(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--transport",
        metavar="URL",
        help="maildir:PATH, smtp://host:port, smtp+starttls://host:port or smtps://host:port "
        "(default: $ROLLOUT_TRANSPORT, else maildir:<state-dir>/outbox); credentials only from "
        "$ROLLOUT_SMTP_USER and $ROLLOUT_SMTP_PASSWORD, and only over TLS. Options as a query "
        "(?timeout=10&cafile=ca.pem): "
        + "; ".join(f"{name}: {meaning}" for name, meaning in URL_OPTIONS.items()),
    )
    p.add_argument(
        "--connections",
        type=_positive_int,
        help=f"SMTP connections (default {_default('connections')})",
    )
    p.add_argument("--rate", type=_positive_rate, help="at most this many messages per second")
    p.add_argument(
        "--after-deadline",
        action="store_true",
        help="send even though the brand's mandatory date has passed",
    )
    p.add_argument(
        "--today",
        type=date.fromisoformat,
        help="act as of this date (YYYY-MM-DD) for the deadline check, e.g. for a rehearsal",
    )


def _wave(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--limit",
        type=_non_negative_int,
        help="send to at most N pending customers per brand (default: brand.toml daily_quota, "
        "0 there meaning all)",
    )


def _as_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


# --- commands ---------------------------------------------------------------------------


def check_keys(brand_slugs: list[str] | None, unpeppered: bool) -> None:
    """Refuse before any flow starts when a brand lacks its pepper or seal key; name demo keys."""
    from rollout.brands import load_brands
    from rollout.keys import brand_keys

    for b in load_brands(brand_slugs):
        keys = brand_keys(b, unpeppered=unpeppered)
        if keys.demo_key_ids:
            print(
                f"rollout: {b.slug}: using DEMO-ONLY keys ({', '.join(keys.demo_key_ids)}) from "
                "data/samples/demo-keys/: everyone can open these; never use them for customers",
                file=sys.stderr,
            )
        if unpeppered:
            print(f"rollout: {b.slug}: hashing WITHOUT a pepper (--unpeppered)", file=sys.stderr)


def cmd_pins(a: argparse.Namespace) -> int:
    from flows.pins import pins_all
    from flows.summary import print_pin_summaries

    given = settings(a)
    check_keys(given.brands, given.unpeppered)
    given.require_exports()  # before a Prefect server or flow run starts, as `run` does
    print_pin_summaries(pins_all(given))
    return 0


def cmd_notify(a: argparse.Namespace, resend: bool = False) -> int:
    from flows.notify import notify_for_brand
    from flows.summary import finish_with_status
    from rollout.brands import load_brands

    given = settings(a)
    brands = load_brands(given.brands)
    _check_deadlines(given, brands)
    for b in brands:
        if resend and a.exports:
            _reread(given, b.slug)
        notify_for_brand(b.slug, given, resend)
    return finish_with_status(given, brands)


def _check_deadlines(given: Settings, brands: Sequence[Brand]) -> None:
    """A late run refuses in one line before any flow starts, so it changes nothing (the
    transport was checked with the other settings)."""
    from rollout.notify import check_deadline

    for b in brands:
        check_deadline(b, given.today or date.today(), given.after_deadline)


def _reread(given: Settings, brand: str) -> None:
    """Re-read a newer export so changed addresses reach the state DB before re-sending."""
    from flows.pins import pins_all

    check_keys([brand], unpeppered=False)
    pins_all(given.model_copy(update={"brands": [brand]}))


def cmd_resend(a: argparse.Namespace) -> int:
    return cmd_notify(a, resend=True)


def cmd_run(a: argparse.Namespace) -> int:
    from flows.run import rollout_run
    from flows.summary import finish_with_status, print_pin_summaries
    from rollout.brands import load_brands

    given = settings(a)
    brands = load_brands(given.brands)
    check_keys(given.brands, given.unpeppered)
    given.require_exports()
    _check_deadlines(given, brands)  # before any PIN is drawn: a late run does nothing
    results = rollout_run(given)
    print_pin_summaries([cast(dict[str, object], r["pins"]) for r in results.values()])
    return finish_with_status(given, brands)


def cmd_preview(a: argparse.Namespace) -> int:
    given = settings(a)
    given.require_exports()
    if needs_prefect(a):  # against a real server: a flow run to see in its UI
        from flows.preview import preview_flow

        lines = preview_flow(given, str(a.out))
    else:
        from rollout.preview import preview_brands

        lines = preview_brands(given, a.out)
    for line in lines:
        print(line)
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    from flows.summary import console, forecasts, print_status, status_rows
    from rollout.plan import summary_line

    given = settings(a)
    rows = status_rows(given)
    lines = [summary_line(f) for f in forecasts(given, datetime.now(UTC))]
    if a.json:
        shown = [r.as_dict() | {"forecast": line} for r, line in zip(rows, lines, strict=True)]
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    else:
        print_status(rows)
        for line in lines:
            console.print(f"forecast {line}", highlight=False, soft_wrap=True)
    return 1 if any(r.needs_attention for r in rows) else 0  # usable as a check in cron


def cmd_plan(a: argparse.Namespace) -> int:
    """Needs no Prefect server and imports no Prefect: the core reads the state DB directly."""
    from flows.summary import forecasts, print_forecasts
    from rollout.plan import start_of

    as_of = start_of(a.today) if a.today else datetime.now(UTC)
    plans = forecasts(settings(a), as_of, a.rate)
    if a.json:
        print(json.dumps([f.as_dict() for f in plans], indent=2, ensure_ascii=False))
    else:
        print_forecasts(plans)
    return 0


def cmd_unreachable(a: argparse.Namespace) -> int:
    from flows.summary import write_unreachable

    count = write_unreachable(settings(a), a.brand, a.out)
    print(f"{count} customers of {a.brand} need another channel: {a.out}")
    return 0


def cmd_unlock(a: argparse.Namespace) -> int:
    from rollout.brands import load_brand
    from rollout.lock import holder_of

    brand = load_brand(a.brand).slug  # an unknown brand is an error, not "not held"
    given = settings(a)
    holder = holder_of(given.state_dir, brand, given.state_url)
    if holder is None:
        print(f"brand {brand} is not locked: nothing to unlock")
        return 0
    print(f"brand {brand} is {holder}; stop that process to free it", file=sys.stderr)
    return 1


def cmd_bounces(a: argparse.Namespace) -> int:
    """Exit 0 when every message was read, 1 when some stay unparsed (listed by name; they
    need a human), 2 when a path is missing or the state dir has no state DB."""
    if a.clear_sender_problems and not a.paths:
        return _clear_sender_problems(a)
    problem = (
        "give at least one PATH"
        if not a.paths
        else "--json goes with --dry-run (a recording run prints its summary)"
        if a.json and not a.dry_run
        else ""
    )
    if problem:
        print(f"rollout: error: bounces: {problem}", file=sys.stderr)
        return 2
    if a.dry_run:
        return _bounces_dry_run(a)
    from flows.bounces import bounces_flow

    lines, unparsed = bounces_flow([str(p) for p in a.paths], settings(a))
    print("\n".join(lines))
    return 1 if unparsed else 0


def _bounces_dry_run(a: argparse.Namespace) -> int:
    """Classify and match without changing anything and without Prefect (the core, directly)."""
    from rollout.bounces import BounceReport, iter_bounces, judge_notices
    from rollout.brands import load_brands
    from rollout.state import StateStore

    chosen = {b.slug for b in load_brands(a.brands)} if a.brands else None
    given = settings(a)
    store = StateStore.existing(given.state_dir, given.state_url)  # read-only; None: classify
    if store is None:
        print(f"rollout: no state DB in {a.state_dir}: classifying only", file=sys.stderr)
    report = BounceReport()
    try:
        for result in judge_notices(store, iter_bounces(a.paths), chosen, dry_run=True):
            report.add(result)
            if a.json:
                print(json.dumps(result.record(), ensure_ascii=False))
    finally:
        if store is not None:
            store.close()
    if not a.json:
        print("\n".join(["dry run: nothing was changed", *report.lines()]))
    return 1 if report.unparsed else 0


def _clear_sender_problems(a: argparse.Namespace) -> int:
    from flows.summary import existing_state
    from rollout.brands import load_brands

    with existing_state(settings(a), writable=True) as store:
        for b in load_brands(a.brands):
            cleared = store.clear_marks(b.slug, "sender_problem")
            print(f"{b.slug}: {cleared} sender problems cleared")
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from flows.serve import require_server, serve_all

    given = settings(a)  # a bad URL (or one with a password) was refused with the rest
    given.require_exports()
    require_server()  # the temporary server of a plain run cannot schedule anything
    serve_all(given)
    return 0


def cmd_keys(a: argparse.Namespace) -> int:
    from rollout.brands import load_brand
    from rollout.keys import KeyConfigError
    from rollout.seal import SealKeyError, write_key_pair

    brand = load_brand(a.brand)
    try:
        files = write_key_pair(a.out, brand.slug, a.key_id or date.today().isoformat())
    except SealKeyError as err:
        raise KeyConfigError(str(err)) from None
    names = brand.secret_names
    print(f"private key (keep it secret; for the self-service backend only): {files.private}")
    print(f"public key: {files.public}; for the pipeline set:")
    print(f"  {names.seal_key}={files.public_b64}")
    print(f"  {names.seal_key_id}={files.key_id}")
    return 0


def _keys_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["new"], help="new: make a key pair")
    p.add_argument("--brand", required=True, help="brand folder name under templates/")
    p.add_argument("--out", type=Path, required=True, help="folder for the two key files")
    p.add_argument("--key-id", help="key id (1-32 of A-Z a-z 0-9 . _ -; default: today's date)")


def _preview_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("preview"), help="folder (default: preview)")
    p.add_argument("--limit", type=_non_negative_int, help="render at most N e-mails per brand")


def _resend_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--exports",
        type=Path,
        help="re-read newer exports from this folder first, so changed addresses are used",
    )
    p.add_argument(
        "--include-unknown",
        action="store_true",
        help="also re-send to those whose earlier send was interrupted (they may get it twice)",
    )


def _whole_number(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `least`, else a one-line usage error."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = least - 1
        if number < least:
            raise argparse.ArgumentTypeError(f"not a whole number of at least {least}: {text!r}")
        return number

    return parse


_positive_int = _whole_number(1)
_non_negative_int = _whole_number(0)


def _positive_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0 or rate == float("inf"):
        raise argparse.ArgumentTypeError(f"not a rate in mails per second: {text!r}")
    return rate


def _plan_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--today",
        type=date.fromisoformat,
        help="plan as of the start of this date (YYYY-MM-DD; default: now)",
    )
    p.add_argument(
        "--rate",
        type=_positive_rate,
        help="sending rate cap in mails per second (default: the rate of the last waves in "
        "the state DB, else none)",
    )


def _one_brand(p: argparse.ArgumentParser) -> None:
    p.add_argument("--brand", required=True, help="brand folder name under templates/")


def _unreachable_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")


def _bounce_paths(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="Maildir folders, mbox files, .eml files, or CSV files (address,code,reason)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="classify and match only: change nothing, start no Prefect",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="with --dry-run: one JSON object per line and recipient notice (file, recipient, "
        "kind, status, reason, message_id, match)",
    )
    p.add_argument(
        "--clear-sender-problems",
        action="store_true",
        help="the cause on our side (blocklisting, SPF/DKIM/DMARC, ...) is fixed: drop the "
        "sender-problem blockers of the chosen brands (default: all); give no PATH",
    )


def _serve_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--transport",
        metavar="URL",
        help="transport for the scheduled runs (default: $ROLLOUT_TRANSPORT, else Maildir)",
    )
    p.add_argument(
        "--after-deadline",
        action="store_true",
        help="the waves send even though the brand's mandatory date has passed (sets "
        "after_deadline in the deployments' parameter settings)",
    )


Option = Callable[[argparse.ArgumentParser], None]
_COMMANDS: list[tuple[str, str, list[Option], Callable[[argparse.Namespace], int]]] = [
    (
        "run",
        "the main job: PINs and write-back, then e-mail the pending customers",
        [_brands, _exports, _state, _pins, _sending, _wave],
        cmd_run,
    ),
    (
        "pins",
        "read exports, assign and hash PINs, write the exports back",
        [_brands, _exports, _state, _pins],
        cmd_pins,
    ),
    (
        "notify",
        "e-mail everyone who has a PIN and was not mailed yet",
        [_brands, _state, _sending, _wave],
        cmd_notify,
    ),
    (
        "preview",
        "render the e-mails (.eml + index.html) without sending or changing any state",
        [_brands, _exports, _state, _preview_opts],
        cmd_preview,
    ),
    (
        "resend",
        "e-mail again those who did not receive it (failed, bounced)",
        [_brands, _state, _sending, _resend_opts],
        cmd_resend,
    ),
    (
        "bounces",
        "read bounce reports (DSN) and bounce lists, mark customers bounced or for retry",
        [_bounce_paths, _brands, _state],
        cmd_bounces,
    ),
    (
        "status",
        "where each brand's rollout stands (exit 1 while anyone is failed or unknown)",
        [_brands, _state, _as_json],
        cmd_status,
    ),
    (
        "plan",
        "will everyone be mailed before the mandatory date? (schedule, quota, rate)",
        [_brands, _state, _plan_opts, _as_json],
        cmd_plan,
    ),
    (
        "unreachable",
        "write the customers without a usable address as CSV (for letter or SMS)",
        [_one_brand, _state, _unreachable_opts],
        cmd_unreachable,
    ),
    (
        "serve",
        "serve the scheduled rollout deployments against a Prefect server",
        [_exports, _state, _serve_opts],
        cmd_serve,
    ),
    (
        "unlock",
        "say who holds a brand's lock (the OS frees it when its process ends, even on a kill)",
        [_one_brand, _state],
        cmd_unlock,
    ),
    (
        "keys",
        "make an X25519 key pair that seals a brand's PINs (tests, demos, the app team)",
        [_keys_opts],
        cmd_keys,
    ),
]

if __name__ == "__main__":
    sys.exit(main())
