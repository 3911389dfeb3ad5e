"""The settings' sections: the generator, the PRM, the proxy, and the pieces they share.

Each is a pydantic model with unknown keys refused (`extra="forbid"`), so a misspelt key in
`rfprm.toml` or `RFPRM_...` is an error that names the closest real key (settings/sources.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

Aggregation = Literal["last", "min", "mean", "prod", "reasonflux"]
AGGREGATION_CHOICES = ("last", "min", "mean", "prod", "reasonflux", "auto")


def check_aggregation(value: str) -> str:
    """One of AGGREGATION_CHOICES, or learned:PATH naming a file (rfprm_tts.prm.learned reads
    and checks the model it holds on first use)."""
    if value.startswith("learned:"):
        path = Path(value.removeprefix("learned:")).expanduser()
        if not path.is_file():  # the path is not repeated: an error never shows a setting's value
            raise ValueError("learned:PATH names no file; write one with `rfprm fit-aggregation SCORED.jsonl -o PATH`")
    elif value not in AGGREGATION_CHOICES:
        raise ValueError(f"must be one of {', '.join(AGGREGATION_CHOICES)} or learned:PATH")  # never the value
    return value


class VLLMSettings(BaseModel):
    """Engine options of the in-process vLLM backend."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a misspelt key or nan/inf is an error

    gpu_memory_utilization: float = Field(
        0.5, gt=0, le=1, description="Share of GPU memory for the engine; the PRM uses the rest."
    )
    max_model_len: int | None = Field(None, ge=1, description="Context length (default: the model's).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs to shard the model over.")
    enforce_eager: bool = Field(False, description="Skip CUDA graphs / torch.compile (faster start, slower decoding).")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Any other vllm.LLM argument, passed as is (JSON in the environment)."
    )


class Sampling(BaseModel):
    """How one generation request samples. Part of the generator settings; a solve or a proxy
    request may change them without reloading any model."""

    model_config = ConfigDict(frozen=True)
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0


# What a solve (or a proxy request) may change without reloading a model: everything else in
# the generator and prm sections, and the step separator, is fixed once a solver exists.
PER_SOLVE_FIELDS = {
    "generator": {*Sampling.model_fields, "system_prompt"},
    "prm": {"aggregation", "alpha", "confidence", "confidence_window", "confidence_weight"},
}


class HTTPSettings(BaseModel):
    """How to reach an HTTP endpoint: the generator's OpenAI-compatible server, or the PRM's
    pooling server (prm.backend "http"). Retries follow rfprm_tts.runtime.http_retry."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a misspelt key or nan/inf is an error

    base_url: str | None = Field(
        None, description="The endpoint: generator e.g. http://127.0.0.1:8000/v1; PRM the pooling server's root URL."
    )
    api_key: SecretStr | None = Field(None, description="API key (a secret: never printed).")
    timeout_s: float = Field(120.0, gt=0, description="Per-request HTTP timeout in seconds.")
    max_retries: int = Field(
        3, ge=0, description="Retries after a timeout, connection error, malformed body, 429 or 5xx."
    )
    backoff_s: float = Field(0.5, ge=0, description="Base of the exponential retry backoff (with jitter).")
    backoff_max_s: float = Field(20.0, ge=0, description="Cap of one backoff wait, and of an honoured Retry-After.")
    replicas: list[str] = Field(
        default_factory=list,
        description="More servers of the same model beside base_url. A question's requests stick to one "
        "server (a hash of the question, so its prefix cache pays off); a server that fails after the "
        "retries is skipped for the next one and tried again after replica_cooldown_s.",
    )
    replica_cooldown_s: float = Field(
        30.0, ge=0, description="How long a failed server is skipped before it is tried again."
    )


class GeneratorSettings(HTTPSettings):
    """Where candidate trajectories come from, and how they are sampled."""

    backend: Literal["transformers", "openai", "vllm"] = Field(
        "transformers",
        description="'transformers': in-process model (CPU or GPU). "
        "'openai': any OpenAI-compatible HTTP endpoint (hosted API, vLLM server). "
        "'vllm': in-process vLLM engine.",
    )
    model: str = Field(
        "demo-think",
        min_length=1,
        description="Model name or local path; 'demo-think' is the bundled world that thinks before it answers, "
        "'demo' the first bundled world (short answers, no thinking).",
    )
    api: Literal["chat", "completions"] = Field(
        "chat", description="Chat completions (server applies the chat template) or completions."
    )
    tokenizer: str | None = Field(
        None,
        description="With api='completions': tokenizer (name or path) whose chat template "
        "formats the prompt locally; without it the messages' contents are sent as raw text.",
    )
    system_prompt: str | None = Field(
        None,
        description="System message put before the question (unless the prompt has its own), "
        "e.g. Qwen2.5-Math's 'Please reason step by step, and put your final answer within "
        "\\boxed{}.'",
    )
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(
        512,
        ge=1,
        description="Most tokens one answer may take; step-level searches give each "
        "step request what the answer has left.",
    )
    seed: int | None = Field(None, description="Sampling seed (reproducible where supported).")
    logprobs: bool = Field(
        False,
        description="Return each sampled token's log-probability (Completion.logprobs), and the tokens with "
        "theirs in OpenAI's shape (Completion.token_logprobs, Candidate.token_logprobs).",
    )
    top_logprobs: int = Field(
        0, ge=0, le=20, description="With logprobs: the most likely tokens at each position, this many, with theirs."
    )
    stop: list[str] = Field(default_factory=list, description="Extra stop sequences.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra JSON fields sent with every HTTP request."
    )
    max_concurrency: int = Field(16, ge=1, description="Most HTTP requests in flight at once.")
    stream_thinking: Literal["auto", "on", "off"] = Field(
        "auto",
        description="openai backend, thinking controls on: 'on': each sample's thinking is one streamed request, "
        "closed the moment the sample stops, its probes sent beside it; 'off': chunks of probe_every tokens, one "
        "request each; 'auto': streamed unless early_exit probes (a stream runs on while its probe waits: "
        "benchmarks/stream_cut.py).",
    )
    num_parameters: int | None = Field(
        None,
        ge=1,
        description="Parameter count of an HTTP-served model, for FLOP estimates (in-process models are counted).",
    )
    device: str = Field("auto", description="In-process backends: 'auto', 'cpu', 'cuda', ...")
    dtype: str = Field(
        "auto",
        description="In-process backends: 'auto', 'float32', 'bfloat16'. 'auto' is bf16 on GPU and fp32 on CPU "
        "for transformers; the vllm backend leaves it to vLLM, which runs a float32 checkpoint in bf16, on CPU too.",
    )
    vllm: VLLMSettings = Field(default_factory=VLLMSettings, description="vllm backend engine options.")

    def sampling(self) -> Sampling:
        """The sampling fields, as a generation request carries them."""
        return Sampling(**self.model_dump(include=set(Sampling.model_fields)))


class PRMSettings(HTTPSettings):
    """The process reward model and how its step scores become one score."""

    backend: Literal["transformers", "vllm", "http"] = Field(
        "transformers",
        description="'transformers': in-process. 'vllm': in-process vLLM pooling runner. "
        "'http': a vLLM pooling server at base_url.",
    )
    model: str = Field(
        "demo-think",
        min_length=1,
        description="PRM name or local path; 'demo-think' and 'demo' are the bundled PRMs of the two demo worlds.",
    )
    format: str = Field(
        "auto",
        description="Input format, by registered name: 'step_tag' (ReasonFlux-PRM-7B, Qwen2.5-Math-PRM), "
        "'scalar_head' (ReasonFlux-PRM-1.5B: causal LM + reward_head.pt), 'math_shepherd' (causal LM, "
        "'+'/'-' at each 'ки'), 'rlhflow' (causal LM, each step a user turn answered '+'), 'skywork' "
        "(Skywork-o1-Open-PRM: value head), 'outcome' (a sequence-classification reward model: one "
        "score per complete answer), 'confidence' (no model: the generator's own log-probabilities), "
        "'generative' (a judge model at base_url writes a critique with a verdict per step). 'auto' "
        "picks the format that claims the checkpoint (reward_head.pt: "
        "scalar_head; Qwen2ForPrmModel: skywork; a 1-label *ForSequenceClassification: outcome), else step_tag.",
    )
    served_model_name: str | None = Field(
        None, description="http backend: the model name the server serves (default: prm.model)."
    )

    vllm: VLLMSettings = Field(default_factory=VLLMSettings, description="vllm backend engine options.")
    device: str = Field("auto", description="'auto' (cuda if available, else cpu), 'cpu', 'cuda'.")
    dtype: str = Field("auto", description="'auto' (bfloat16 on cuda, float32 on cpu) or a name.")
    batch_size: int = Field(64, ge=1, description="Most inputs in one padded forward pass.")
    max_batch_tokens: int = Field(16384, ge=1, description="Most tokens in one forward pass (padding included).")
    batching: Literal["auto", "bucket", "pack"] = Field(
        "auto",
        description="transformers backend: 'bucket' sorts inputs by length into padded batches; 'pack' puts them "
        "end to end in one row (no padding; fast with flash or flex attention, not sdpa); 'auto' packs under those.",
    )
    attention: Literal["auto", "sdpa", "flex_attention", "flash_attention_2", "eager"] = Field(
        "auto",
        description="transformers attn_implementation: 'flex_attention' (block-sparse masks for packed inputs), "
        "'flash_attention_2' (needs flash-attn): whole inputs only, incremental scoring runs sdpa; 'auto': sdpa.",
    )

    def model_options(self) -> dict[str, Any]:
        """What `from_pretrained` takes from these settings (attention "auto": transformers chooses)."""
        attention = None if self.attention == "auto" else self.attention
        return {"trust_remote_code": self.trust_remote_code, "attn_implementation": attention}

    max_length: int | None = Field(
        None,
        ge=1,
        description="PRM context in tokens; default: the checkpoint's "
        "max_position_embeddings (vLLM: max_model_len; http: unchecked unless set).",
    )
    overflow: Literal["error", "truncate", "window"] = Field(
        "error",
        description="An input longer than the context: 'error'; 'truncate' (question + the "
        "last steps that fit, earlier steps unscored); 'window' (overlapping windows of steps, "
        "each after the question). Candidates say which steps were scored and how.",
    )
    window_overlap: int = Field(2, ge=0, description="Steps of context a window repeats from the one before.")
    incremental: bool = Field(
        True,
        description="transformers step-tag PRMs: keep the KV cache of scored prefixes so a "
        "search scores only the new steps (same scores as full re-scoring); vllm backend, token-level "
        "read-outs: vLLM's prefix cache, with the cached head's rows kept here.",
    )
    cache_max_tokens: int = Field(
        65536,
        ge=0,
        description="Most prefix tokens the incremental cache (vllm: the kept rows) holds (LRU beyond); "
        "a 7B Qwen2 PRM in bf16 keeps 56 KiB per token (65536 tokens: 3.5 GiB).",
    )
    aggregation: Annotated[str, AfterValidator(check_aggregation)] = Field(
        "auto",
        description="Step scores -> one score: last, min, mean, prod, or reasonflux "
        "(mean + alpha x final-answer step); 'auto' takes the checkpoint's rfprm_aggregation "
        "(the demo PRM says 'prod'), else reasonflux; 'learned:PATH' a model that rfprm fit-aggregation wrote.",
    )
    alpha: float = Field(1.0, description="Weight of the final-answer score in 'reasonflux'.")
    step_tag: str | None = Field(
        None,
        description="Token that ends each step in the PRM input. None: the format's own ('<extra_0>' "
        "for step_tag, 'ки' for math_shepherd, a newline for skywork).",
    )
    confidence: Literal["mean", "min", "lowest_group", "tail"] = Field(
        "lowest_group",
        description="format 'confidence' (no reward model: the generator's token log-probabilities): "
        "exp of the mean log-probability over all tokens, of the least likely token, of the lowest "
        "mean over any window, or of the mean over the last window.",
    )
    confidence_window: int = Field(
        2048,
        ge=1,
        description="format 'confidence': tokens per window (lowest_group, tail); a window longer than the answer is the whole answer.",
    )
    confidence_weight: float = Field(
        0.0,
        ge=0.0,
        description="With a reward model: multiply each candidate's score by its generator confidence (the "
        "prm.confidence read-out) to this power; 0 = off, 1 = PRM score x confidence. Turns generator.logprobs on.",
    )
    judge_max_tokens: int = Field(2048, ge=1, description="format 'generative': most tokens of the judge's critique.")
    judge_concurrency: int = Field(
        16, ge=1, description="format 'generative': answers judged at once (one request each)."
    )
    good_token: str = Field("+", description="math_shepherd, rlhflow: the token whose probability is the step score.")
    bad_token: str = Field(
        "-", description="math_shepherd, rlhflow: the token it is weighed against (softmax over the two)."
    )
    system_prompt: str | None = Field(
        None,
        description="System message of the PRM input. None (the ReasonFlux-PRM recipe): the chat "
        "template's default. Qwen2.5-Math-PRM's model card passes 'Please reason step by step, "
        "and put your final answer within \\boxed{}.'",
    )
    readout: Literal["auto", "step_tag", "token_min"] = Field(
        "auto",
        description="Where a step's score is read: at its step tag (ReasonFlux), or the min over "
        "its tokens and tag (token-level PRMs); 'auto' takes the checkpoint's rfprm_readout.",
    )
    trust_remote_code: bool = Field(False, description="Run the checkpoint's own modeling code (explicit opt-in).")


class RouteSettings(BaseModel):
    """One more model name the proxy answers to (serve.routes): a generator, PRM, strategy and
    budget of its own, each given as what differs from the server's settings. A route that
    changes the generator (or the PRM) loads its own; one that does not shares the server's."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    generator: dict[str, Any] = Field(
        default_factory=dict,
        description="Generator settings that differ from the server's, e.g. {model = 'Qwen/Qwen2.5-7B-Instruct', "
        "base_url = 'http://gpu-box:8000/v1'}.",
    )
    prm: dict[str, Any] = Field(default_factory=dict, description="PRM settings that differ from the server's.")
    draft: dict[str, Any] = Field(
        default_factory=dict,
        description="Draft model settings that differ from the server's (a speculative route's cheaper model).",
    )
    selector: dict[str, Any] = Field(
        default_factory=dict,
        description="Selector model settings that differ from the server's (a genselect route's selector).",
    )
    strategy: str | None = Field(None, description="The route's search strategy (None: the server's).")
    n: int | None = Field(None, ge=1, description="The route's sample budget N (None: the server's).")
    strategy_params: dict[str, Any] = Field(
        default_factory=dict, description="The route's strategy parameters, over the server's."
    )
    token_budget: int | None = Field(
        None, ge=1, description="Token budget of a request to the route that asks for none (within max_token_budget)."
    )


class ServeSettings(BaseModel):
    """`rfprm serve`: the OpenAI-compatible proxy's address, keys and limits."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a misspelt key or nan/inf is an error

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0: every interface).")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on (0: any free port).")
    model_name: str = Field(
        "rfprm",
        min_length=1,
        description="Model name the proxy answers to and lists at /v1/models (the default route).",
    )
    routes: dict[str, RouteSettings] = Field(
        default_factory=dict,
        description="More model names, each a route with its own generator, PRM, strategy or budget "
        "([serve.routes.NAME] in rfprm.toml, or rfprm serve --route NAME KEY=VALUE ...); a request's model picks one.",
    )
    passthrough_models: bool = Field(
        False,
        description="Answer a model name that is no route with the default route, asking its upstream for that "
        "model by name (generator.backend 'openai'): for clients that pick the upstream model themselves.",
    )
    reasoning_effort: dict[str, int | None] = Field(
        default_factory=lambda: {"none": 64, "minimal": 256, "low": 1024, "medium": 4096, "high": None},
        description="A request's OpenAI reasoning_effort as a thinking budget (max_thinking_tokens) of the "
        "sampling strategies; None: no cap. Strategies without thinking controls ignore it; "
        "rfprm.thinking_budget in a request wins.",
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Bearer keys clients must send (secrets; a JSON list in the environment, "
        "--api-key-file PATH with one a line, or --api-key KEY, repeatable, which shows in ps). Empty or "
        "blank keys are refused. Empty: no auth, allowed on loopback only unless allow_no_auth.",
    )
    allow_no_auth: bool = Field(
        False,
        description="Listen beyond loopback without API keys (anyone who reaches the port spends "
        "the upstream's tokens): only on a network you trust.",
    )
    max_body_bytes: int = Field(1_000_000, ge=1, description="Largest request body accepted (413 past it).")
    max_n: int = Field(64, ge=1, description="Largest sample budget (rfprm.n) a request may ask for.")
    max_tokens: int = Field(4096, ge=1, description="Largest max_tokens a request may ask for.")
    max_token_budget: int | None = Field(
        None,
        ge=1,
        description="Largest token budget a request may ask for (rfprm.token_budget or the "
        "X-Rfprm-Token-Budget header), and the budget of one that asks for none; None: no limit.",
    )
    max_concurrent_per_key: int = Field(
        8, ge=1, description="Requests one key may have in flight (429 with Retry-After past it)."
    )
    batch_window_ms: float = Field(
        5.0, ge=0, description="How long PRM work waits for other requests' work to batch with."
    )
    max_batch: int = Field(256, ge=1, description="Most trajectories in one batched PRM call.")
    access_log: bool = Field(
        False, description="A log line per request (costs CPU under load; /metrics counts requests without it)."
    )
    max_concurrent: int = Field(
        512, ge=1, description="Requests the whole proxy may have in flight, over all keys (then they queue)."
    )
    queue_wait_s: float = Field(
        2.0,
        ge=0,
        description="How long a request waits for a free place under the limits before a 429 with Retry-After.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Time a client has to send its whole request body (408 past it); the body is in before a request takes a place.",
    )
    metrics_public: bool = Field(
        False,
        description="Serve /metrics without a key (for a Prometheus scraper that sends none); else it asks for one.",
    )
