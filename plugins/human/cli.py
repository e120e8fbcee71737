"""``alignkit label ...``: run the annotation app and move pairs and labels in and out.

    alignkit label serve --db URL [--host 127.0.0.1] [--port 8000] [--trusted-proxy ADDR]
                         [--connection-limit N] [--channel-timeout S]
    alignkit label add-annotator NAME [--admin] --db URL       prints the secret token once
    alignkit label rotate-token NAME --db URL
    alignkit label import --db URL --project P (--pairs F.jsonl | --run RUN_DIR | --argilla F.json | --label-studio F.json)
    alignkit label export --db URL --project P [--format preferences|argilla|label-studio]
                          [--aggregate none|majority|dawid_skene] [--out FILE]
    alignkit label status --db URL --project P                   progress and agreement as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from alignkit.core.errors import AlignkitError
from alignkit.plugins.human.limits import CHANNEL_TIMEOUT, CONNECTION_LIMIT, PROXY_HEADERS

DEFAULT_DB = "sqlite:///labels.db"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignkit label", description="Human preference labels for alignkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    def db(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=DEFAULT_DB, help=f"SQLAlchemy URL or SQLite file (default {DEFAULT_DB})")

    p = sub.add_parser("serve", help="run the annotation web app")
    db(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--trusted-proxy", metavar="ADDR",
                   help="address of the TLS-terminating reverse proxy (e.g. 127.0.0.1): its forwarded headers are "
                        "believed, so https pages and their forms work and the cookie is Secure")
    p.add_argument("--trusted-proxy-headers", metavar="H,H",
                   help=f"forwarded headers to believe from it (default {','.join(PROXY_HEADERS)}; "
                        "or 'forwarded' for the RFC 7239 Forwarded header)")
    p.add_argument("--trusted-proxy-count", type=int, default=1, metavar="N",
                   help="proxies in the chain to believe (default 1)")
    p.add_argument("--connection-limit", type=int, default=CONNECTION_LIMIT, metavar="N",
                   help=f"connections served at once (default {CONNECTION_LIMIT})")
    p.add_argument("--channel-timeout", type=int, default=CHANNEL_TIMEOUT, metavar="S",
                   help=f"close a connection idle this many seconds (default {CHANNEL_TIMEOUT})")

    p = sub.add_parser("add-annotator", help="create an annotator and print their secret token")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="may see the admin page and download labels")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the app's address, for the sign-in page")
    db(p)

    p = sub.add_parser("rotate-token", help="issue a new token for an annotator (the old one stops working)")
    p.add_argument("name")
    db(p)

    p = sub.add_parser("import", help="add pairs (and labels from Argilla / Label Studio) to a project")
    db(p)
    p.add_argument("--project", default="default")
    p.add_argument("--overlap", type=int, default=None, help="annotators per item")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", help="JSONL: prompt + response_a/response_b (or chosen/rejected)")
    src.add_argument("--run", help="a run directory: its sampled pairs")
    src.add_argument("--argilla", help="JSON list of Argilla records")
    src.add_argument("--label-studio", help="JSON list of Label Studio tasks")

    p = sub.add_parser("export", help="write labels as preference JSONL, Argilla or Label Studio JSON")
    db(p)
    p.add_argument("--project", default="default")
    p.add_argument("--format", choices=("preferences", "argilla", "label-studio"), default="preferences")
    p.add_argument("--aggregate", choices=("none", "majority", "dawid_skene"), default="majority")
    p.add_argument("--out", help="output file (default: standard output)")

    p = sub.add_parser("status", help="progress and agreement of a project, as JSON")
    db(p)
    p.add_argument("--project", default="default")
    return parser


def _load_json_list(path: str) -> list:
    from alignkit.core.errors import DataError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg} (line {exc.lineno})", path=path) from exc
    if not isinstance(data, list):
        raise DataError("expected a JSON list", path=path)
    return data


def run(args: argparse.Namespace) -> int:
    from alignkit.plugins.human import interop
    from alignkit.plugins.human.store import Store

    store = Store(args.db)
    try:
        if args.command == "serve":
            from alignkit.plugins.human.app import serve, waitress_options

            if args.trusted_proxy_headers and not args.trusted_proxy:
                raise ValueError("--trusted-proxy-headers needs --trusted-proxy ADDR (the proxy they come from)")
            headers = [h.strip() for h in (args.trusted_proxy_headers or ",".join(PROXY_HEADERS)).split(",")
                       if h.strip()]
            options = dict(trusted_proxy=args.trusted_proxy, trusted_proxy_headers=headers,
                           trusted_proxy_count=args.trusted_proxy_count, connection_limit=args.connection_limit,
                           channel_timeout=args.channel_timeout)
            waitress_options(**options)  # a wrong option is an error before the admin token is made
            if args.host not in LOCAL_HOSTS and not args.trusted_proxy:
                print(f"alignkit label: serving on {args.host}: anyone who can reach this address can try tokens; "
                      "put it behind TLS (a reverse proxy, then --trusted-proxy ADDR) when it leaves this machine",
                      file=sys.stderr)
            if not store.has_admin():
                token = store.add_annotator("admin", admin=True)
                print(f"alignkit label: created the admin token (shown once): {token}")
            behind = f", behind the proxy at {args.trusted_proxy}" if args.trusted_proxy else ""
            print(f"alignkit label: serving {store.display_url} at http://{args.host}:{args.port}/{behind} "
                  "(annotators sign in with their token)", flush=True)
            serve(store, args.host, args.port, threads=args.threads, **options)
        elif args.command == "add-annotator":
            token = store.add_annotator(args.name, admin=args.admin)
            print(f"token for {args.name} (shown once; only its hash is stored): {token}")
            # never the token in a URL: links end up in proxy logs and browser history, and must not sign in
            print(f"sign in at {args.url.rstrip('/')}/login with that token")
        elif args.command == "rotate-token":
            print(f"new token for {args.name}: {store.rotate_token(args.name)}")
        elif args.command == "import":
            if args.pairs or args.run:
                pairs = interop.read_pairs(args.pairs) if args.pairs else interop.run_pairs(args.run)
                ids = store.add_items(args.project, pairs, overlap=args.overlap,
                                      origin_run=str(Path(args.run).resolve()) if args.run else None)
                print(f"imported {len(set(ids))} pairs into project '{args.project}'")
            else:
                if args.overlap is not None:
                    store.ensure_project(args.project, args.overlap)
                source = args.argilla or args.label_studio
                records = _load_json_list(source)
                fn = interop.import_argilla if args.argilla else interop.import_label_studio
                items, labels = fn(store, args.project, records, source=source)
                print(f"imported {items} pairs and {labels} labels into project '{args.project}'")
        elif args.command == "export":
            if store.project(args.project) is None:
                print(f"alignkit label: no project '{args.project}' in {store.display_url}", file=sys.stderr)
                return 2
            if args.format == "preferences":
                rows = interop.export_preferences(store, args.project, aggregate=args.aggregate)
                text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            else:
                fn = interop.export_argilla if args.format == "argilla" else interop.export_label_studio
                rows = fn(store, args.project)
                text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
            if args.out:
                from alignkit.core.rundir import atomic_write_text

                atomic_write_text(Path(args.out), text)
                print(f"wrote {len(rows)} records to {args.out}", file=sys.stderr)
            else:
                sys.stdout.write(text)
        elif args.command == "status":
            from alignkit.plugins.human.agreement import agreement

            print(json.dumps({"progress": store.progress(args.project),
                              "agreement": agreement(store.labels(args.project))}, indent=2))
        return 0
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return run(args)
    except (AlignkitError, ValueError, OSError) as exc:
        print(f"alignkit label: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
