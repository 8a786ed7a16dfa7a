using System.Text.Json;
using System.Text.Json.Nodes;

namespace Verifier.Core;

/// <summary>The transformer of BOUNDS.md §1, described with TransformerLens's field names
/// (HookedTransformerConfig). Only what this version implements is accepted: ReLU MLP or attention-only,
/// learned absolute positions, no normalisation.</summary>
public sealed record ModelConfig(
    int DModel, int NHeads, int DHead, int DMlp, int NLayers, int NCtx, int DVocab, int DVocabOut, bool AttnOnly)
{
    public const string FileName = "config.json";

    public static ModelConfig Create(int dModel, int nHeads, int dHead, int dMlp, int nLayers, int nCtx, int dVocab, int dVocabOut, bool attnOnly)
    {
        var c = new ModelConfig(dModel, nHeads, dHead, attnOnly ? 0 : dMlp, nLayers, nCtx, dVocab, dVocabOut, attnOnly);
        c.Validate("<config>");
        return c;
    }

    void Validate(string file)
    {
        void Positive(string field, int v) { if (v <= 0) throw new InvalidInputException(file, $"field '{field}'", $"must be a positive integer, got {v}"); }
        Positive("d_model", DModel); Positive("n_heads", NHeads); Positive("d_head", DHead); Positive("n_layers", NLayers);
        Positive("n_ctx", NCtx); Positive("d_vocab", DVocab); Positive("d_vocab_out", DVocabOut);
        if (!AttnOnly) Positive("d_mlp", DMlp);
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

    /// <summary>Fields that are inert only because a field they modify is held at the value this version implements:
    /// accepted with any value, given that (the other field is checked in <see cref="Parse"/>).</summary>
    public static readonly IReadOnlyDictionary<string, string> ConditionallyInertFields = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["eps"] = "normalization_type is null (no normalisation to add it in)",
        ["window_size"] = "use_local_attn is false", ["attn_types"] = "use_local_attn is false",
        ["rotary_dim"] = "positional_embedding_type is 'standard'", ["rotary_base"] = "positional_embedding_type is 'standard'",
        ["rotary_adjacent_pairs"] = "positional_embedding_type is 'standard'", ["use_NTK_by_parts_rope"] = "positional_embedding_type is 'standard'",
        ["NTK_by_parts_low_freq_factor"] = "positional_embedding_type is 'standard'", ["NTK_by_parts_high_freq_factor"] = "positional_embedding_type is 'standard'",
        ["NTK_by_parts_factor"] = "positional_embedding_type is 'standard'", ["NTK_original_ctx_len"] = "positional_embedding_type is 'standard'",
        ["relative_attention_max_distance"] = "positional_embedding_type is 'standard'", ["relative_attention_num_buckets"] = "positional_embedding_type is 'standard'",
        ["experts_per_token"] = "num_experts is null",
    };

    /// <summary>Fields that change the function: implemented (read), or accepted only at the one value that
    /// matches the function this version computes and refused by name otherwise.</summary>
    public static readonly IReadOnlySet<string> FunctionalFields = new HashSet<string>(StringComparer.Ordinal)
    {
        "d_model", "n_heads", "d_head", "d_mlp", "n_layers", "n_ctx", "d_vocab", "d_vocab_out", "attn_only", "act_fn",
        "normalization_type", "positional_embedding_type", "use_attn_scale", "attn_scale", "scale_attn_by_inverse_layer_idx",
        "use_local_attn", "gated_mlp", "parallel_attn_mlp", "n_key_value_heads", "attention_dir", "final_rms",
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
        if (Str("normalization_type") is not null) Refuse("normalization_type", "is not supported yet (only null: no LayerNorm/RMSNorm)");
        string? act = Str("act_fn");
        if (!attnOnly && act != "relu") Refuse("act_fn", "is not supported (only 'relu')");
        string? pos = Str("positional_embedding_type");
        if (pos is not null && pos != "standard") Refuse("positional_embedding_type", "is not supported (only 'standard': a learned W_pos)");
        OnlyFalse("gated_mlp", "gated MLPs");
        OnlyFalse("parallel_attn_mlp", "attention and MLP in parallel");
        OnlyFalse("use_local_attn", "local attention");
        OnlyFalse("scale_attn_by_inverse_layer_idx", "scores divided by layer index + 1");
        OnlyFalse("final_rms", "a final RMSNorm");
        OnlyFalse("post_embedding_ln", "a LayerNorm after the embedding");
        OnlyFalse("use_normalization_before_and_after", "normalisation after each sublayer");
        OnlyFalse("use_qk_norm", "normalised queries and keys");
        OnlyFalse("load_in_4bit", "4-bit quantised weights");
        OnlyFalse("tie_word_embeddings", "an unembedding tied to the embedding");
        if (!Bool("use_attn_scale", true)) Refuse("use_attn_scale", "is not supported (scores are always divided by sqrt(d_head)); only true");
        if (o["n_key_value_heads"] is not null) Refuse("n_key_value_heads", "is not supported (grouped-query attention); only null");
        if (o["num_experts"] is not null) Refuse("num_experts", "is not supported (mixture of experts); only null");
        if (Str("attention_dir") is string dir && dir != "causal") Refuse("attention_dir", "is not supported (only 'causal')");
        foreach (string cap in new[] { "output_logits_soft_cap", "attn_scores_soft_cap" })
            if (Num(cap) is { } v && v != -1.0) Refuse(cap, "is not supported (soft capping with tanh); only -1.0 (off)");

        int dModel = Int("d_model"), dHead = Int("d_head");
        if (Num("attn_scale") is { } scale && (dHead <= 0 || Math.Abs(scale - Math.Sqrt(dHead)) > 4 * (Math.BitIncrement(Math.Sqrt(dHead)) - Math.Sqrt(dHead))))
            Refuse("attn_scale", $"differs from sqrt(d_head) = {Math.Sqrt(dHead):R}, the only scale supported");
        int dVocab = Int("d_vocab");
        int dVocabOut = Int("d_vocab_out", -1);
        if (dVocabOut == -1) dVocabOut = dVocab;
        int dMlp = attnOnly ? 0 : Int("d_mlp");
        var c = new ModelConfig(dModel, Int("n_heads"), dHead, dMlp, Int("n_layers"), Int("n_ctx"), dVocab, dVocabOut, attnOnly);
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
            ["act_fn"] = AttnOnly ? null : "relu", ["normalization_type"] = null,
            ["attn_only"] = AttnOnly, ["positional_embedding_type"] = "standard",
            ["original_architecture"] = "Verifier",
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>Every parameter tensor of the model, with its TransformerLens name and shape.</summary>
    public IEnumerable<(string Name, int[] Shape)> ParameterShapes()
    {
        yield return ("embed.W_E", [DVocab, DModel]);
        yield return ("pos_embed.W_pos", [NCtx, DModel]);
        for (int l = 0; l < NLayers; l++)
        {
            string a = $"blocks.{l}.attn.";
            yield return (a + "W_Q", [NHeads, DModel, DHead]);
            yield return (a + "W_K", [NHeads, DModel, DHead]);
            yield return (a + "W_V", [NHeads, DModel, DHead]);
            yield return (a + "W_O", [NHeads, DHead, DModel]);
            yield return (a + "b_Q", [NHeads, DHead]);
            yield return (a + "b_K", [NHeads, DHead]);
            yield return (a + "b_V", [NHeads, DHead]);
            yield return (a + "b_O", [DModel]);
            if (AttnOnly) continue;
            string m = $"blocks.{l}.mlp.";
            yield return (m + "W_in", [DModel, DMlp]);
            yield return (m + "b_in", [DMlp]);
            yield return (m + "W_out", [DMlp, DModel]);
            yield return (m + "b_out", [DModel]);
        }
        yield return ("unembed.W_U", [DModel, DVocabOut]);
        yield return ("unembed.b_U", [DVocabOut]);
    }

    /// <summary>Buffers a TransformerLens state_dict carries that hold no parameters (the causal mask and the
    /// masking constant). Accepted when present and ignored: this project's causal mask is fixed.</summary>
    public bool IsIgnorableBuffer(string name)
    {
        for (int l = 0; l < NLayers; l++)
            if (name == $"blocks.{l}.attn.mask" || name == $"blocks.{l}.attn.IGNORE") return true;
        return false;
    }

    /// <summary>Names of the residual-stream sites in order, as TransformerLens hooks: h⁰ = blocks.0.hook_resid_pre,
    /// then per layer h^{l,mid} = hook_resid_mid (omitted for attention-only models, where it equals h^l)
    /// and h^l = hook_resid_post.</summary>
    public IReadOnlyList<string> SiteNames()
    {
        var sites = new List<string> { "blocks.0.hook_resid_pre" };
        for (int l = 0; l < NLayers; l++)
        {
            if (!AttnOnly) sites.Add($"blocks.{l}.hook_resid_mid");
            sites.Add($"blocks.{l}.hook_resid_post");
        }
        return sites;
    }
}
