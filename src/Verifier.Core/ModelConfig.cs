using System.Text.Json;
using System.Text.Json.Nodes;

namespace Verifier.Core;

/// <summary>Normalisation before each sublayer and before the unembedding (TransformerLens normalization_type):
/// LN = centre, divide by √(mean square + eps), then ·w + b; LNPre = the same without w, b (folded);
/// RMS = divide by √(mean square + eps), then ·w; RMSPre = without w.</summary>
public enum NormKind { None, LN, LNPre, RMS, RMSPre }

/// <summary>MLP activation (TransformerLens act_fn): relu; gelu (exact, with erf); gelu_new and gelu_pytorch_tanh
/// (0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))); gelu_fast (0.5x(1 + tanh(0.7978845608·x·(1 + 0.044715x²)))); silu (x·σ(x)).</summary>
public enum ActKind { Relu, Gelu, GeluNew, GeluFast, GeluPytorchTanh, Silu }

/// <summary>The transformer of BOUNDS.md §1, described with TransformerLens's field names (HookedTransformerConfig),
/// with the TransformerLens architecture options this version implements (spec/model.md): normalisation (LN, LNPre,
/// RMS, RMSPre, final_rms), activations, gated MLPs, parallel attention and MLP, rotary positions, grouped-query
/// attention, local (banded) attention per layer and the attention scale options. Everything else is refused.</summary>
public sealed record ModelConfig(
    int DModel, int NHeads, int DHead, int DMlp, int NLayers, int NCtx, int DVocab, int DVocabOut, bool AttnOnly)
{
    public const string FileName = "config.json";

    /// <summary>normalization_type; <see cref="Eps"/> is added to the mean square.</summary>
    public NormKind Normalization { get; init; } = NormKind.None;
    /// <summary>final_rms: ln_final is an RMSNorm (RMSPre under LNPre) although the blocks use LayerNorm.</summary>
    public bool FinalRms { get; init; }
    public double Eps { get; init; } = 1e-5;
    public ActKind Act { get; init; } = ActKind.Relu;
    public bool GatedMlp { get; init; }
    public bool ParallelAttnMlp { get; init; }
    /// <summary>use_attn_scale: scores are divided by the scale (else by 1, times layer + 1 when
    /// <see cref="ScaleAttnByInverseLayerIdx"/>).</summary>
    public bool UseAttnScale { get; init; } = true;
    /// <summary>attn_scale when it is not √d_head (within 4 ulps): that exact float64. Null: the real √d_head.</summary>
    public double? AttnScale { get; init; }
    public bool ScaleAttnByInverseLayerIdx { get; init; }
    /// <summary>positional_embedding_type 'rotary' (no W_pos): the first <see cref="RotaryDim"/> dimensions of every
    /// query and key are rotated by angle t / base^(2i/rotary_dim).</summary>
    public bool Rotary { get; init; }
    public int RotaryDim { get; init; }
    public double RotaryBase { get; init; } = 10000;
    /// <summary>GPT-J pairing (2i, 2i+1) when true; GPT-NeoX pairing (i, i + rotary_dim/2) when false (TransformerLens's default).</summary>
    public bool RotaryAdjacentPairs { get; init; }
    /// <summary>n_key_value_heads (grouped-query attention: tensors _W_K, _W_V, _b_K, _b_V); null: every head has its own.</summary>
    public int? NKeyValueHeads { get; init; }
    /// <summary>use_local_attn: the attention type of each layer, "global" or "local", joined by ',' (one string keeps
    /// the record's equality structural); null when use_local_attn is false.</summary>
    public string? AttnTypes { get; init; }
    /// <summary>window_size of the local layers: query t attends to keys s with t − window_size &lt; s ≤ t.</summary>
    public int WindowSize { get; init; }

    /// <summary>Key/value heads: <see cref="NKeyValueHeads"/> or n_heads. Query head h reads key/value head
    /// h / (n_heads / n_kv) (TransformerLens's repeat_interleave).</summary>
    public int KvHeads => NKeyValueHeads ?? NHeads;
    public int KvHeadOf(int head) => head / (NHeads / KvHeads);
    public bool HasPosEmbed => !Rotary;
    public bool IsLocal(int layer) => AttnTypes is not null && AttnTypes.Split(',')[layer] == "local";
    /// <summary>The first key position query t may attend to in <paramref name="layer"/> (0, or t − window_size + 1 for a local layer).</summary>
    public int FirstKey(int layer, int t) => IsLocal(layer) ? Math.Max(0, t - WindowSize + 1) : 0;

    /// <summary>The normalisation before the unembedding: the blocks' one, an RMSNorm (RMSPre) instead under final_rms.</summary>
    public NormKind FinalNorm => (Normalization, FinalRms) switch
    {
        (NormKind.LN, true) => NormKind.RMS,
        (NormKind.LNPre, true) => NormKind.RMSPre,
        var (n, _) => n,
    };

    /// <summary>Scores of layer l are divided by D_l = base · (l + 1 when scale_attn_by_inverse_layer_idx, else 1), base
    /// = √d_head (the real square root: <paramref name="sqrtDHead"/>), attn_scale or 1. Returns the factor other than
    /// √d_head, an exact float64 (an integer times attn_scale is formed exactly by the caller's arithmetic).</summary>
    public (bool SqrtDHead, double Base, int LayerFactor) AttnDivisor(int layer) =>
        (UseAttnScale && AttnScale is null, UseAttnScale ? AttnScale ?? 1.0 : 1.0, ScaleAttnByInverseLayerIdx ? layer + 1 : 1);

    /// <summary>The BOUNDS.md §1 model of earlier versions: no normalisation, ReLU (or attention-only), learned positions,
    /// every head its own keys, causal global attention scaled by √d_head. Code that has not been extended to the other
    /// architectures calls <see cref="RequireBasic"/> and refuses them by name rather than computing something else.</summary>
    public bool IsBasic => Features().Count == 0;

    /// <summary>The options of this model beyond the basic one, as "field value" texts (empty for a basic model).</summary>
    public IReadOnlyList<string> Features()
    {
        var f = new List<string>();
        if (Normalization != NormKind.None) f.Add($"normalization_type {NormName(Normalization)}");
        if (FinalRms && Normalization != NormKind.None) f.Add("final_rms true");
        if (!AttnOnly && Act != ActKind.Relu) f.Add($"act_fn {ActName(Act)}");
        if (!AttnOnly && GatedMlp) f.Add("gated_mlp true");
        if (!AttnOnly && ParallelAttnMlp) f.Add("parallel_attn_mlp true");
        if (Rotary) f.Add("positional_embedding_type rotary");
        if (NKeyValueHeads is not null) f.Add($"n_key_value_heads {NKeyValueHeads}");
        if (AttnTypes is not null) f.Add("use_local_attn true");
        if (!UseAttnScale) f.Add("use_attn_scale false");
        if (UseAttnScale && AttnScale is not null) f.Add($"attn_scale {AttnScale:R}");
        if (ScaleAttnByInverseLayerIdx) f.Add("scale_attn_by_inverse_layer_idx true");
        return f;
    }

    /// <summary>Refuses (exit 4) a model with any option beyond the basic one, naming <paramref name="what"/> and the options.</summary>
    public void RequireBasic(string what)
    {
        var f = Features();
        if (f.Count > 0)
            throw new UnsupportedConfigException("config.json", f[0].Split(' ')[0],
                $"{what} supports only the basic architecture (no normalisation, ReLU, learned positions, global attention scaled by sqrt(d_head)); this model has {string.Join(", ", f)}");
    }

    /// <summary>The options beyond the basic model that crosscoder-tables covers (proofs/T3-normalised-tables.md):
    /// normalisations, final_rms, the activation, local attention and the attention divisor. Sequential blocks, learned
    /// positions and every head its own keys stay.</summary>
    static readonly string[] TablesFields = ["normalization_type", "final_rms", "act_fn", "use_local_attn", "use_attn_scale", "attn_scale", "scale_attn_by_inverse_layer_idx"];

    /// <summary>True when crosscoder-tables' lemmas (T1, T2, L1 with T3) cover this model: its only options beyond the
    /// basic model are <see cref="TablesFields"/> (the GPT-2, gelu-Nl and GPT-Neo/TinyStories families).</summary>
    public bool CrosscoderTablesCover => NotCoveredByTables().Count == 0;

    /// <summary>The options of this model (as in <see cref="Features"/>) that crosscoder-tables does not cover.</summary>
    List<string> NotCoveredByTables() => Features().Where(x => !TablesFields.Contains(x.Split(' ')[0])).ToList();

    /// <summary>Refuses (exit 4) a model crosscoder-tables does not cover, naming the first option outside it.</summary>
    public void RequireTablesCover(string what)
    {
        var f = NotCoveredByTables();
        if (f.Count > 0)
            throw new UnsupportedConfigException("config.json", f[0].Split(' ')[0],
                $"{what} supports the basic architecture with normalisation, any activation, local attention and any attention scale (sequential blocks, learned positions, every head its own keys); this model has {string.Join(", ", Features())}, and {string.Join(", ", f)} is not covered");
    }

    public static string NormName(NormKind n) => n switch
    {
        NormKind.LN => "LN", NormKind.LNPre => "LNPre", NormKind.RMS => "RMS", NormKind.RMSPre => "RMSPre", _ => "null",
    };

    public static string ActName(ActKind a) => a switch
    {
        ActKind.Relu => "relu", ActKind.Gelu => "gelu", ActKind.GeluNew => "gelu_new", ActKind.GeluFast => "gelu_fast",
        ActKind.GeluPytorchTanh => "gelu_pytorch_tanh", ActKind.Silu => "silu", _ => throw new ArgumentOutOfRangeException(nameof(a)),
    };

    static readonly Dictionary<string, ActKind> Acts = Enum.GetValues<ActKind>().ToDictionary(ActName, a => a, StringComparer.Ordinal);
    static readonly Dictionary<string, NormKind> Norms = new(StringComparer.Ordinal)
    {
        ["LN"] = NormKind.LN, ["LNPre"] = NormKind.LNPre, ["RMS"] = NormKind.RMS, ["RMSPre"] = NormKind.RMSPre,
    };

    /// <summary>TransformerLens's normalization_type names (LN, LNPre, RMS, RMSPre); "none" too when
    /// <paramref name="allowNone"/> (the CLI's spelling of null).</summary>
    public static bool TryParseNorm(string name, bool allowNone, out NormKind kind)
    {
        if (allowNone && name == "none") { kind = NormKind.None; return true; }
        return Norms.TryGetValue(name, out kind);
    }

    /// <summary>TransformerLens's default attn_scale is np.sqrt(d_head): a value within 4 ulps of √d_head means the real √d_head.</summary>
    public static bool IsDefaultAttnScale(double scale, int dHead)
    {
        double sq = Math.Sqrt(Math.Max(dHead, 0));
        return dHead > 0 && Math.Abs(scale - sq) <= 4 * (Math.BitIncrement(sq) - sq);
    }

    public static ModelConfig Create(int dModel, int nHeads, int dHead, int dMlp, int nLayers, int nCtx, int dVocab, int dVocabOut, bool attnOnly)
    {
        var c = new ModelConfig(dModel, nHeads, dHead, attnOnly ? 0 : dMlp, nLayers, nCtx, dVocab, dVocabOut, attnOnly);
        c.Validate("<config>");
        return c;
    }

    /// <summary>This configuration with its options checked (for configurations built in code with <c>with</c>).</summary>
    public ModelConfig Validated() { Validate("<config>"); return this; }

    void Validate(string file)
    {
        void Positive(string field, int v) { if (v <= 0) throw new InvalidInputException(file, $"field '{field}'", $"must be a positive integer, got {v}"); }
        Positive("d_model", DModel); Positive("n_heads", NHeads); Positive("d_head", DHead); Positive("n_layers", NLayers);
        Positive("n_ctx", NCtx); Positive("d_vocab", DVocab); Positive("d_vocab_out", DVocabOut);
        if (!AttnOnly) Positive("d_mlp", DMlp);
        if (Normalization != NormKind.None && !(Eps > 0 && double.IsFinite(Eps)))
            throw new InvalidInputException(file, "field 'eps'", $"must be a positive finite number with normalization_type {NormName(Normalization)}, got {Eps:R}");
        if (Rotary)
        {
            if (RotaryDim <= 0 || RotaryDim % 2 != 0 || RotaryDim > DHead)
                throw new InvalidInputException(file, "field 'rotary_dim'", $"must be a positive even integer ≤ d_head {DHead} with rotary positions, got {RotaryDim}");
            if (!(RotaryBase > 0 && double.IsFinite(RotaryBase)))
                throw new InvalidInputException(file, "field 'rotary_base'", $"must be a positive finite number, got {RotaryBase:R}");
        }
        if (NKeyValueHeads is { } kv && (kv <= 0 || NHeads % kv != 0))
            throw new InvalidInputException(file, "field 'n_key_value_heads'", $"must be a positive divisor of n_heads {NHeads}, got {kv}");
        if (AttnTypes is not null)
        {
            var types = AttnTypes.Split(',');
            if (types.Length != NLayers || types.Any(t => t is not ("global" or "local")))
                throw new InvalidInputException(file, "field 'attn_types'", $"must list 'global' or 'local' for each of the {NLayers} layers, got [{Display.Escape(AttnTypes)}]");
            if (types.Contains("local") && WindowSize <= 0)
                throw new InvalidInputException(file, "field 'window_size'", $"must be a positive integer for local attention, got {WindowSize}");
        }
        if (AttnScale is { } s && !(s > 0 && double.IsFinite(s)))
            throw new InvalidInputException(file, "field 'attn_scale'", $"must be a positive finite number, got {s:R}");
    }

    /// <summary>Every HookedTransformerConfig field that only names, places, seeds, initialises or instruments the
    /// model (hooks, caching, tokenizer, device) and so cannot change the function computed from the stored
    /// weights: accepted with any value (spec/model.md).</summary>
    public static readonly IReadOnlySet<string> InertFields = new HashSet<string>(StringComparer.Ordinal)
    {
        "model_name", "device", "n_devices", "seed", "dtype", "tokenizer_name", "original_architecture",
        "from_checkpoint", "checkpoint_index", "checkpoint_label_type", "checkpoint_value",
        "init_mode", "initializer_range", "init_weights", "n_params", "default_prepend_bos", "tokenizer_prepends_bos",
        "use_hook_tokens", "use_split_qkv_input", "use_attn_result", "use_attn_in", "use_hook_mlp_in",
        "ungroup_grouped_query_attention", "trust_remote_code", "decoder_start_token_id",
    };

    /// <summary>Fields that are inert only because a field they modify is held at a value that does not read them:
    /// accepted with any value, given that (the other field is checked in <see cref="Parse"/>).</summary>
    public static readonly IReadOnlyDictionary<string, string> ConditionallyInertFields = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["NTK_by_parts_low_freq_factor"] = "use_NTK_by_parts_rope is false", ["NTK_by_parts_high_freq_factor"] = "use_NTK_by_parts_rope is false",
        ["NTK_by_parts_factor"] = "use_NTK_by_parts_rope is false", ["NTK_original_ctx_len"] = "use_NTK_by_parts_rope is false",
        ["relative_attention_max_distance"] = "positional_embedding_type is not 'relative_positional_bias'",
        ["relative_attention_num_buckets"] = "positional_embedding_type is not 'relative_positional_bias'",
        ["experts_per_token"] = "num_experts is null",
    };

    /// <summary>Fields that change the function: implemented (read; some only when another field asks for them: eps with a
    /// normalisation, rotary_* with rotary positions, window_size/attn_types with use_local_attn), or accepted only at
    /// the one value that matches the function this version computes and refused by name otherwise.</summary>
    public static readonly IReadOnlySet<string> FunctionalFields = new HashSet<string>(StringComparer.Ordinal)
    {
        "d_model", "n_heads", "d_head", "d_mlp", "n_layers", "n_ctx", "d_vocab", "d_vocab_out", "attn_only", "act_fn",
        "normalization_type", "eps", "positional_embedding_type", "rotary_dim", "rotary_base", "rotary_adjacent_pairs",
        "use_NTK_by_parts_rope", "use_attn_scale", "attn_scale", "scale_attn_by_inverse_layer_idx",
        "use_local_attn", "window_size", "attn_types", "gated_mlp", "parallel_attn_mlp", "n_key_value_heads", "attention_dir", "final_rms",
        "num_experts", "post_embedding_ln", "use_normalization_before_and_after", "output_logits_soft_cap",
        "attn_scores_soft_cap", "use_qk_norm", "load_in_4bit", "tie_word_embeddings",
    };

    /// <summary>Parses a TransformerLens-style config. Every field must be known (<see cref="FunctionalFields"/>,
    /// <see cref="InertFields"/>, <see cref="ConditionallyInertFields"/>); an unknown field, or a value that asks
    /// for a function this version does not compute, is refused with the field and the value named (exit 4).</summary>
    public static ModelConfig Parse(string file, string json)
    {
        var root = StrictJson.Parse(file, json);
        if (root is not JsonObject o) throw new InvalidInputException(file, "JSON", "must be an object");

        foreach (var (key, _) in o)
            if (!FunctionalFields.Contains(key) && !InertFields.Contains(key) && !ConditionallyInertFields.ContainsKey(key))
                throw new UnsupportedConfigException(file, Display.Escape(key),
                    "unknown field: not a TransformerLens HookedTransformerConfig field this version knows to be inert or implements (spec/model.md)");

        static string Show(JsonNode? n) => Display.Escape(n?.ToJsonString() ?? "null");
        int Int(string field, int? fallback = null)
        {
            var n = o[field];
            if (n is null) return fallback ?? throw new InvalidInputException(file, $"field '{field}'", "missing (expected an integer)");
            if (n is JsonValue v && v.TryGetValue(out long l) && l is >= int.MinValue and <= int.MaxValue) return (int)l;
            if (n is JsonValue d && d.TryGetValue(out double x) && x == Math.Floor(x) && Math.Abs(x) < int.MaxValue) return (int)x;
            throw new InvalidInputException(file, $"field '{field}'", $"expected an integer, got {Show(n)}");
        }
        string? Str(string field)
        {
            var n = o[field];
            if (n is null) return null;
            if (n is JsonValue v && v.TryGetValue(out string? s)) return s;
            throw new InvalidInputException(file, $"field '{field}'", $"expected a string or null, got {Show(n)}");
        }
        bool Bool(string field, bool fallback)
        {
            var n = o[field];
            if (n is null) return fallback;
            if (n is JsonValue v && v.TryGetValue(out bool b)) return b;
            throw new InvalidInputException(file, $"field '{field}'", $"expected true or false, got {Show(n)}");
        }
        double? Num(string field)
        {
            var n = o[field];
            if (n is null) return null;
            if (n is JsonValue v && v.TryGetValue(out double x)) return x;
            throw new InvalidInputException(file, $"field '{field}'", $"expected a number, got {Show(n)}");
        }
        void Refuse(string field, string problem) => throw new UnsupportedConfigException(file, field, $"{Show(o[field])} {problem}");
        void OnlyFalse(string field, string what) { if (Bool(field, false)) Refuse(field, $"is not supported ({what}); only false"); }

        bool attnOnly = Bool("attn_only", false);
        var norm = NormKind.None;
        if (Str("normalization_type") is string nt && !Norms.TryGetValue(nt, out norm))
            Refuse("normalization_type", "is not supported (only null, 'LN', 'LNPre', 'RMS', 'RMSPre')");
        string? act = Str("act_fn");
        var actKind = ActKind.Relu;
        if (!attnOnly && (act is null || !Acts.TryGetValue(act, out actKind)))
            Refuse("act_fn", "is not supported (only 'relu', 'gelu', 'gelu_new', 'gelu_fast', 'gelu_pytorch_tanh', 'silu')");
        string? pos = Str("positional_embedding_type");
        if (pos is not null && pos != "standard" && pos != "rotary")
            Refuse("positional_embedding_type", "is not supported (only 'standard', a learned W_pos, and 'rotary')");
        bool rotary = pos == "rotary";
        OnlyFalse("use_NTK_by_parts_rope", "NTK-by-parts rotary scaling");
        bool local = Bool("use_local_attn", false);
        OnlyFalse("post_embedding_ln", "a LayerNorm after the embedding");
        OnlyFalse("use_normalization_before_and_after", "normalisation after each sublayer");
        OnlyFalse("use_qk_norm", "normalised queries and keys");
        OnlyFalse("load_in_4bit", "4-bit quantised weights");
        OnlyFalse("tie_word_embeddings", "an unembedding tied to the embedding");
        if (o["num_experts"] is not null) Refuse("num_experts", "is not supported (mixture of experts); only null");
        if (Str("attention_dir") is string dir && dir != "causal") Refuse("attention_dir", "is not supported (only 'causal')");
        foreach (string cap in new[] { "output_logits_soft_cap", "attn_scores_soft_cap" })
            if (Num(cap) is { } v && v != -1.0) Refuse(cap, "is not supported (soft capping with tanh); only -1.0 (off)");

        int dModel = Int("d_model"), dHead = Int("d_head"), nLayers = Int("n_layers");
        double? attnScale = null;
        bool useScale = Bool("use_attn_scale", true);
        if (Num("attn_scale") is { } scale)
        {
            if (!(scale > 0 && double.IsFinite(scale))) Refuse("attn_scale", "is not supported (the scale must be a positive finite number)");
            if (!IsDefaultAttnScale(scale, dHead)) attnScale = scale;
        }
        string? attnTypes = null; int window = 0;
        if (local)
        {
            if (o["attn_types"] is not JsonArray arr || arr.Any(x => x is not JsonValue xv || !xv.TryGetValue(out string? _)))
                throw new InvalidInputException(file, "field 'attn_types'", $"expected a list of 'global'/'local' with use_local_attn, got {Show(o["attn_types"])}");
            attnTypes = string.Join(",", arr.Select(x => x!.GetValue<string>()));
            window = Int("window_size", 0);
        }
        int dVocab = Int("d_vocab");
        int dVocabOut = Int("d_vocab_out", -1);
        if (dVocabOut == -1) dVocabOut = dVocab;
        int dMlp = attnOnly ? 0 : Int("d_mlp");
        var c = new ModelConfig(dModel, Int("n_heads"), dHead, dMlp, nLayers, Int("n_ctx"), dVocab, dVocabOut, attnOnly)
        {
            Normalization = norm,
            FinalRms = norm != NormKind.None && Bool("final_rms", false),
            Eps = norm == NormKind.None ? 1e-5 : Num("eps") ?? 1e-5,
            Act = attnOnly ? ActKind.Relu : actKind,
            GatedMlp = !attnOnly && Bool("gated_mlp", false),
            ParallelAttnMlp = !attnOnly && Bool("parallel_attn_mlp", false),
            UseAttnScale = useScale,
            AttnScale = useScale ? attnScale : null,
            ScaleAttnByInverseLayerIdx = Bool("scale_attn_by_inverse_layer_idx", false),
            Rotary = rotary,
            RotaryDim = rotary ? Int("rotary_dim") : 0,
            RotaryBase = rotary ? Num("rotary_base") ?? 10000 : 10000,
            RotaryAdjacentPairs = rotary && Bool("rotary_adjacent_pairs", false),
            NKeyValueHeads = o["n_key_value_heads"] is null ? null : Int("n_key_value_heads"),
            AttnTypes = attnTypes,
            WindowSize = window,
        };
        // Fields read only under another field's value are type-checked anyway, so a malformed file is never silent.
        if (!local) { if (o["window_size"] is not null) Int("window_size"); }
        if (!rotary) { if (o["rotary_dim"] is not null) Int("rotary_dim"); Num("rotary_base"); Bool("rotary_adjacent_pairs", false); }
        if (norm == NormKind.None) { Num("eps"); Bool("final_rms", false); }
        if (attnOnly) { Bool("gated_mlp", false); Bool("parallel_attn_mlp", false); }
        c.Validate(file);
        return c;
    }

    public static ModelConfig Load(string dir) => Load(dir, out _);

    /// <summary>Loads config.json and gives the SHA-256 of exactly the bytes it was parsed from.</summary>
    public static ModelConfig Load(string dir, out string sha256)
    {
        string path = System.IO.Path.Combine(dir, FileName);
        if (!File.Exists(path)) throw new InvalidInputException(path, "file", "does not exist (a model directory holds config.json and model.safetensors)");
        byte[] bytes = File.ReadAllBytes(path);
        sha256 = Hashing.Sha256(bytes);
        return Parse(path, Utf8Text(bytes));
    }

    /// <summary>UTF-8 text as File.ReadAllText reads it (a leading byte-order mark dropped).</summary>
    public static string Utf8Text(byte[] bytes) =>
        bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF
            ? System.Text.Encoding.UTF8.GetString(bytes, 3, bytes.Length - 3) : System.Text.Encoding.UTF8.GetString(bytes);

    public string ToJson()
    {
        var o = new JsonObject
        {
            ["d_model"] = DModel, ["n_heads"] = NHeads, ["d_head"] = DHead,
            ["d_mlp"] = AttnOnly ? null : DMlp, ["n_layers"] = NLayers, ["n_ctx"] = NCtx,
            ["d_vocab"] = DVocab, ["d_vocab_out"] = DVocabOut,
            ["act_fn"] = AttnOnly ? null : ActName(Act), ["normalization_type"] = Normalization == NormKind.None ? null : NormName(Normalization),
            ["attn_only"] = AttnOnly, ["positional_embedding_type"] = Rotary ? "rotary" : "standard",
            ["original_architecture"] = "Verifier",
        };
        if (Normalization != NormKind.None) { o["eps"] = Eps; o["final_rms"] = FinalRms; }
        if (!AttnOnly) { o["gated_mlp"] = GatedMlp; o["parallel_attn_mlp"] = ParallelAttnMlp; }
        if (!UseAttnScale) o["use_attn_scale"] = false;
        if (AttnScale is { } s) o["attn_scale"] = s;
        if (ScaleAttnByInverseLayerIdx) o["scale_attn_by_inverse_layer_idx"] = true;
        if (Rotary) { o["rotary_dim"] = RotaryDim; o["rotary_base"] = RotaryBase; o["rotary_adjacent_pairs"] = RotaryAdjacentPairs; }
        if (NKeyValueHeads is { } kv) o["n_key_value_heads"] = kv;
        if (AttnTypes is not null)
        {
            o["use_local_attn"] = true;
            o["attn_types"] = new JsonArray(AttnTypes.Split(',').Select(t => (JsonNode?)JsonValue.Create(t)).ToArray());
            o["window_size"] = WindowSize;
        }
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>Every parameter tensor of the model, with its TransformerLens name and shape.</summary>
    public IEnumerable<(string Name, int[] Shape)> ParameterShapes()
    {
        yield return ("embed.W_E", [DVocab, DModel]);
        if (HasPosEmbed) yield return ("pos_embed.W_pos", [NCtx, DModel]);
        for (int l = 0; l < NLayers; l++)
        {
            foreach (var p in NormShapes($"blocks.{l}.ln1.", Normalization)) yield return p;
            string a = $"blocks.{l}.attn.";
            string kv = NKeyValueHeads is null ? "" : "_";
            yield return (a + "W_Q", [NHeads, DModel, DHead]);
            yield return (a + kv + "W_K", [KvHeads, DModel, DHead]);
            yield return (a + kv + "W_V", [KvHeads, DModel, DHead]);
            yield return (a + "W_O", [NHeads, DHead, DModel]);
            yield return (a + "b_Q", [NHeads, DHead]);
            yield return (a + kv + "b_K", [KvHeads, DHead]);
            yield return (a + kv + "b_V", [KvHeads, DHead]);
            yield return (a + "b_O", [DModel]);
            if (AttnOnly) continue;
            foreach (var p in NormShapes($"blocks.{l}.ln2.", Normalization)) yield return p;
            string m = $"blocks.{l}.mlp.";
            yield return (m + "W_in", [DModel, DMlp]);
            if (GatedMlp) yield return (m + "W_gate", [DModel, DMlp]);
            yield return (m + "b_in", [DMlp]);
            yield return (m + "W_out", [DMlp, DModel]);
            yield return (m + "b_out", [DModel]);
        }
        foreach (var p in NormShapes("ln_final.", FinalNorm)) yield return p;
        yield return ("unembed.W_U", [DModel, DVocabOut]);
        yield return ("unembed.b_U", [DVocabOut]);
    }

    IEnumerable<(string Name, int[] Shape)> NormShapes(string prefix, NormKind n)
    {
        if (n is NormKind.LN or NormKind.RMS) yield return (prefix + "w", [DModel]);
        if (n is NormKind.LN) yield return (prefix + "b", [DModel]);
    }

    /// <summary>Bias tensors that may be absent from a state dict and then read as zeros, as TransformerLens initialises
    /// them (models converted without biases: LLaMA-style attention and MLPs). Normalisation weights are never optional.</summary>
    public bool IsOptionalBias(string name) =>
        name == "unembed.b_U" || (name.StartsWith("blocks.", StringComparison.Ordinal) &&
        (name.EndsWith(".attn.b_Q", StringComparison.Ordinal) || name.EndsWith(".attn.b_K", StringComparison.Ordinal) ||
         name.EndsWith(".attn.b_V", StringComparison.Ordinal) || name.EndsWith(".attn._b_K", StringComparison.Ordinal) ||
         name.EndsWith(".attn._b_V", StringComparison.Ordinal) || name.EndsWith(".attn.b_O", StringComparison.Ordinal) ||
         name.EndsWith(".mlp.b_in", StringComparison.Ordinal) || name.EndsWith(".mlp.b_out", StringComparison.Ordinal)));

    /// <summary>Buffers a TransformerLens state_dict carries that hold no parameters (the causal or banded mask, the
    /// masking constant, the rotary sine and cosine tables). Accepted when present and ignored: this version computes
    /// each of them from the configuration, exactly.</summary>
    public bool IsIgnorableBuffer(string name)
    {
        for (int l = 0; l < NLayers; l++)
            if (name == $"blocks.{l}.attn.mask" || name == $"blocks.{l}.attn.IGNORE"
                || (Rotary && (name == $"blocks.{l}.attn.rotary_sin" || name == $"blocks.{l}.attn.rotary_cos"))) return true;
        return false;
    }

    /// <summary>Whether layer l has a residual site between attention and MLP (not for attention-only models, where it
    /// equals the next, nor with parallel attention and MLP, where TransformerLens has no hook_resid_mid).</summary>
    public bool HasMidSite => !AttnOnly && !ParallelAttnMlp;

    /// <summary>Names of the residual-stream sites in order, as TransformerLens hooks: h⁰ = blocks.0.hook_resid_pre,
    /// then per layer h^{l,mid} = hook_resid_mid (see <see cref="HasMidSite"/>) and h^l = hook_resid_post.</summary>
    public IReadOnlyList<string> SiteNames()
    {
        var sites = new List<string> { "blocks.0.hook_resid_pre" };
        for (int l = 0; l < NLayers; l++)
        {
            if (HasMidSite) sites.Add($"blocks.{l}.hook_resid_mid");
            sites.Add($"blocks.{l}.hook_resid_post");
        }
        return sites;
    }
}
