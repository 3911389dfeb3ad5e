"""`rfprm serve`: the OpenAI-compatible proxy, checked (keys, port) before any model loads."""

from __future__ import annotations

import argparse
from typing import IO, Any

from rfprm_tts.cli.arguments import Commands, add_backend_arguments, at_least, parse_value, solve_overrides
from rfprm_tts.errors import RfprmError


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser("serve", help="OpenAI-compatible proxy: PRM-chosen answers from any upstream")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument(
        "--strategy", help="default search strategy: {strategies} (a request's rfprm.strategy overrides)"
    )
    parser.add_argument("-n", "--n", type=at_least(1), help="default sample budget (a request's rfprm.n overrides)")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="a key clients must send as 'Authorization: Bearer KEY' (repeatable); it shows in ps: "
        "prefer --api-key-file or RFPRM_SERVE__API_KEYS='[\"KEY\"]'; never printed",
    )
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="a file of keys clients may send, one a line ('#' comments): keeps them out of ps and shell history",
    )
    parser.add_argument(
        "--allow-no-auth",
        action="store_true",
        default=None,
        help="serve beyond loopback without API keys (only on a network you trust)",
    )
    parser.add_argument("--model-name", help="the model name clients ask for and /v1/models lists (default rfprm)")
    parser.add_argument(
        "--max-concurrent",
        type=at_least(1),
        help="requests in flight at once, all keys together; more queue (default 512)",
    )
    parser.add_argument(
        "--max-concurrent-per-key", type=at_least(1), help="requests in flight at once for one key (default 8)"
    )
    parser.add_argument("--max-n", type=at_least(1), help="largest sample budget a request may ask for (default 64)")
    parser.add_argument(
        "--route",
        nargs="+",
        action="append",
        dest="routes",
        metavar="NAME [SETTING=VALUE ...]",
        help="one more model name clients may ask for, with what differs from the server: strategy=, n=, "
        "token_budget=, strategy_params.NAME=, generator.SETTING= (model, base_url, ...), prm.SETTING= "
        "(repeatable; e.g. --route deep strategy=beam_search n=16 strategy_params.beam_width=4)",
    )
    parser.add_argument(
        "--passthrough-models",
        action="store_true",
        default=None,
        help="answer any other model name too, asking the upstream for that model (openai backend)",
    )
    add_backend_arguments(parser)


def run(args: argparse.Namespace, out: IO[str]) -> int:
    from rfprm_tts.serve.admission import read_key_file
    from rfprm_tts.settings import Settings

    overrides = solve_overrides(args)
    keys = [*(args.api_keys or []), *(read_key_file(args.api_key_file) if args.api_key_file else [])]
    given = {
        "host": args.host,
        "port": args.port,
        "api_keys": keys or None,
        "allow_no_auth": args.allow_no_auth,
        "model_name": args.model_name,
        "max_concurrent": args.max_concurrent,
        "max_concurrent_per_key": args.max_concurrent_per_key,
        "max_n": args.max_n,
        "passthrough_models": args.passthrough_models,
    }
    overrides.update({f"serve__{k}": v for k, v in given.items() if v is not None})
    settings = Settings.load()
    if args.routes:
        configured = {name: route.model_dump(exclude_unset=True) for name, route in settings.serve.routes.items()}
        overrides["serve__routes"] = configured | dict(route_option(words) for words in args.routes)
    settings = settings.with_overrides(**overrides)
    check_port_free(settings.serve.host, settings.serve.port)
    from rfprm_tts.serve import serve  # torch and transformers: after the quick checks

    serve(settings)
    return 0


def route_option(words: list[str]) -> tuple[str, dict[str, Any]]:
    """`--route NAME a=1 generator.model=X` -> ("NAME", {"a": 1, "generator": {"model": "X"}})."""
    name, *items = words
    if "=" in name:
        raise RfprmError(f"--route takes the route's name first, then SETTING=VALUE items; got {name!r} first")
    route: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RfprmError(f"--route {name}: expected SETTING=VALUE, got {item!r}")
        *sections, field = key.split(".")
        node = route
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise RfprmError(f"--route {name}: {key!r} sets inside {section!r}, which is a single value")
        node[field] = parse_value(value)
    return name, route


def check_port_free(host: str, port: int) -> None:
    """Refuse a taken port before the models load (uvicorn would load them, then fail to bind)."""
    import socket

    if port == 0:
        return
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise RfprmError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port, or stop what is using it"
        ) from None
