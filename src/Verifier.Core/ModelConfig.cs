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

    /// <summary>Parses a TransformerLens-style config. Fields this version does not use are ignored;
    /// fields whose value asks for an unsupported architecture are refused with the field named.</summary>
    public static ModelConfig Parse(string file, string json)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (JsonException e) { throw new InvalidInputException(file, "JSON", e.Message, e); }
        if (root is not JsonObject o) throw new InvalidInputException(file, "JSON", "must be an object");

        int Int(string field, int? fallback = null)
        {
            var n = o[field];
            if (n is null) return fallback ?? throw new InvalidInputException(file, $"field '{field}'", "missing (expected an integer)");
            if (n is JsonValue v && v.TryGetValue(out long l) && l is >= int.MinValue and <= int.MaxValue) return (int)l;
            if (n is JsonValue d && d.TryGetValue(out double x) && x == Math.Floor(x) && Math.Abs(x) < int.MaxValue) return (int)x;
            throw new InvalidInputException(file, $"field '{field}'", $"expected an integer, got {n.ToJsonString()}");
        }
        string? Str(string field)
        {
            var n = o[field];
            if (n is null) return null;
            if (n is JsonValue v && v.TryGetValue(out string? s)) return s;
            throw new InvalidInputException(file, $"field '{field}'", $"expected a string or null, got {n.ToJsonString()}");
        }
        bool Bool(string field, bool fallback)
        {
            var n = o[field];
            if (n is null) return fallback;
            if (n is JsonValue v && v.TryGetValue(out bool b)) return b;
            throw new InvalidInputException(file, $"field '{field}'", $"expected true or false, got {n.ToJsonString()}");
        }
        void Refuse(string field, string problem) => throw new UnsupportedConfigException(file, field, problem);

        bool attnOnly = Bool("attn_only", false);
        string? norm = Str("normalization_type");
        if (norm is not null) Refuse("normalization_type", $"'{norm}' is not supported yet (only null: no LayerNorm/RMSNorm)");
        string? act = Str("act_fn");
        if (!attnOnly && act != "relu") Refuse("act_fn", $"'{act ?? "null"}' is not supported (only 'relu')");
        string? pos = Str("positional_embedding_type");
        if (pos is not null && pos != "standard") Refuse("positional_embedding_type", $"'{pos}' is not supported (only 'standard': a learned W_pos)");
        if (Bool("gated_mlp", false)) Refuse("gated_mlp", "gated MLPs are not supported");
        if (Bool("parallel_attn_mlp", false)) Refuse("parallel_attn_mlp", "parallel attention and MLP is not supported");
        if (!Bool("use_attn_scale", true)) Refuse("use_attn_scale", "attention without the 1/sqrt(d_head) scale is not supported");
        if (o["n_key_value_heads"] is JsonNode kv && kv.ToJsonString() != "null") Refuse("n_key_value_heads", "grouped-query attention is not supported");
        if (Bool("use_local_attn", false)) Refuse("use_local_attn", "local attention is not supported");
        if (Str("attention_dir") is string dir && dir != "causal") Refuse("attention_dir", $"'{dir}' is not supported (only 'causal')");

        int dModel = Int("d_model"), dHead = Int("d_head");
        if (o["attn_scale"] is JsonValue sc && sc.TryGetValue(out double scale) && Math.Abs(scale - Math.Sqrt(dHead)) > 1e-9 * Math.Sqrt(dHead))
            Refuse("attn_scale", $"{scale} differs from sqrt(d_head) = {Math.Sqrt(dHead)}");
        int dVocab = Int("d_vocab");
        int dVocabOut = Int("d_vocab_out", -1);
        if (dVocabOut == -1) dVocabOut = dVocab;
        int dMlp = attnOnly ? 0 : Int("d_mlp");
        var c = new ModelConfig(dModel, Int("n_heads"), dHead, dMlp, Int("n_layers"), Int("n_ctx"), dVocab, dVocabOut, attnOnly);
        c.Validate(file);
        return c;
    }

    public static ModelConfig Load(string dir)
    {
        string path = System.IO.Path.Combine(dir, FileName);
        if (!File.Exists(path)) throw new InvalidInputException(path, "file", "does not exist (a model directory holds config.json and model.safetensors)");
        return Parse(path, File.ReadAllText(path));
    }

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
