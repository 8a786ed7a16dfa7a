using System.CommandLine;
using Verifier.Core;

namespace Verifier.Cli;

/// <summary>The architecture options of train-model: the shape (--d-model, …), a preset (--arch) and one option per
/// TransformerLens field (spec/model.md, "Training architectures"). An explicit option overrides the preset; an option
/// that means nothing for the model being built (--act-fn with --attn-only, --rotary-dim without rotary positions, …)
/// or that contradicts another is refused by name rather than ignored.</summary>
sealed class ArchitectureOptions
{
    public static readonly IReadOnlyList<string> Presets = ["basic", "gpt2-like", "pythia-like", "llama-like", "neo-like"];

    public readonly Option<int> DModel = Options.Positive<int>("--d-model", "Residual stream width", 32);
    public readonly Option<int> NHeads = Options.Positive<int>("--n-heads", "Attention heads per layer", 2);
    public readonly Option<int> DHead = Options.Positive<int>("--d-head", "Width of each head", 16);
    public readonly Option<int> DMlp = Options.Positive<int>("--d-mlp", "MLP hidden width", 64);
    public readonly Option<int> NLayers = Options.Positive<int>("--n-layers", "Number of layers", 1);
    public readonly Option<bool> AttnOnly = new("--attn-only") { Description = "Attention-only layers (no MLP)" };

    public readonly Option<string> Arch = new("--arch")
    {
        Description = "Architecture preset: basic (no normalisation, ReLU, learned positions) | gpt2-like (LN, gelu_new) | " +
                      "pythia-like (LN, gelu, rotary on a quarter of d_head, parallel attention and MLP) | llama-like (RMS, silu, " +
                      "gated MLP, rotary, grouped-query attention) | neo-like (LN, gelu_new, alternating global/local attention, no attention scale); " +
                      "the options below override it",
        DefaultValueFactory = _ => "basic",
    };
    public readonly Option<string?> Normalization = new("--normalization") { Description = "normalization_type: none | LN | LNPre | RMS | RMSPre" };
    public readonly Option<bool?> FinalRms = new("--final-rms") { Description = "final_rms: ln_final is an RMSNorm although the blocks use LayerNorm" };
    public readonly Option<double?> Eps = new("--eps") { Description = "eps added to the mean square in every normalisation (default 1e-5)" };
    public readonly Option<string?> ActFn = new("--act-fn") { Description = "act_fn: relu | gelu | gelu_new | gelu_fast | gelu_pytorch_tanh | silu" };
    public readonly Option<bool?> GatedMlp = new("--gated-mlp") { Description = "gated_mlp: (act(x W_gate) ⊙ x W_in + b_in) W_out + b_out" };
    public readonly Option<bool?> ParallelAttnMlp = new("--parallel-attn-mlp") { Description = "parallel_attn_mlp: attention and MLP both read resid_pre (no resid_mid site)" };
    public readonly Option<string?> PositionalEmbedding = new("--positional-embedding") { Description = "positional_embedding_type: standard (learned W_pos) | rotary" };
    public readonly Option<int?> RotaryDim = new("--rotary-dim") { Description = "rotary_dim: rotated dimensions of each head (even, ≤ d_head; default: the preset's, else d_head)" };
    public readonly Option<double?> RotaryBase = new("--rotary-base") { Description = "rotary_base (default 10000)" };
    public readonly Option<bool?> RotaryAdjacentPairs = new("--rotary-adjacent-pairs") { Description = "rotary_adjacent_pairs: rotate (2i, 2i+1) (GPT-J) instead of (i, i + rotary_dim/2) (GPT-NeoX)" };
    public readonly Option<int?> NKeyValueHeads = new("--n-key-value-heads") { Description = "n_key_value_heads: grouped-query attention with this many key/value heads (a divisor of n_heads)" };
    public readonly Option<string?> AttnTypes = new("--attn-types") { Description = "attn_types: 'global' or 'local' per layer, comma-separated (use_local_attn)" };
    public readonly Option<int?> WindowSize = new("--window-size") { Description = "window_size of the local layers: query t reads keys t − window_size < s ≤ t" };
    public readonly Option<bool?> UseAttnScale = new("--use-attn-scale") { Description = "use_attn_scale: divide attention scores by the scale (default true)" };
    public readonly Option<double?> AttnScale = new("--attn-scale") { Description = "attn_scale (default √d_head)" };
    public readonly Option<bool?> InverseLayerScale = new("--scale-attn-by-inverse-layer-idx") { Description = "scale_attn_by_inverse_layer_idx: also divide layer l's scores by l + 1" };

    public ArchitectureOptions() => Arch.AcceptOnlyFromAmong([.. Presets]);

    Option[] All => [DModel, NHeads, DHead, DMlp, NLayers, AttnOnly, Arch, Normalization, FinalRms, Eps, ActFn, GatedMlp, ParallelAttnMlp,
        PositionalEmbedding, RotaryDim, RotaryBase, RotaryAdjacentPairs, NKeyValueHeads, AttnTypes, WindowSize, UseAttnScale, AttnScale, InverseLayerScale];

    public void AddTo(Command c)
    {
        foreach (var o in All) c.Options.Add(o);
    }

    /// <summary>The preset's choices for a model of this shape (spec/model.md, "Training architectures").</summary>
    public static ModelConfig Preset(string arch, ModelConfig shape)
    {
        var c = shape;
        int dh = c.DHead;
        return arch switch
        {
            "basic" => c,
            "gpt2-like" => c with { Normalization = NormKind.LN, Act = ActKind.GeluNew },
            // Pythia rotates 25% of each head (rotary_pct 0.25): rotary_dim = d_head/4 rounded down to even, at least 2.
            "pythia-like" => c with
            {
                Normalization = NormKind.LN, Act = ActKind.Gelu, Rotary = true, RotaryDim = Math.Min(dh - dh % 2, Math.Max(2, dh / 4 / 2 * 2)),
                ParallelAttnMlp = !c.AttnOnly,
            },
            // LLaMA rotates the whole head, GPT-NeoX pairing (TransformerLens's convention for LLaMA); key/value heads halved
            // when n_heads is even (grouped-query attention, as LLaMA 2 70B and later).
            "llama-like" => c with
            {
                Normalization = NormKind.RMS, Act = ActKind.Silu, GatedMlp = !c.AttnOnly, Rotary = true, RotaryDim = dh - dh % 2,
                NKeyValueHeads = c.NHeads % 2 == 0 ? c.NHeads / 2 : null,
            },
            // GPT-Neo: layers alternate global, local, … (a one-layer model gets one local layer, so the preset always has a
            // window), window ⌈n_ctx/2⌉, and scores are not scaled.
            "neo-like" => c with
            {
                Normalization = NormKind.LN, Act = ActKind.GeluNew, UseAttnScale = false,
                AttnTypes = c.NLayers == 1 ? "local" : string.Join(",", Enumerable.Range(0, c.NLayers).Select(l => l % 2 == 0 ? "global" : "local")),
                WindowSize = (c.NCtx + 1) / 2,
            },
            _ => throw new UsageException($"--arch: '{Display.Escape(arch)}' is not a preset; the presets are {string.Join(", ", Presets)}"),
        };
    }

    public ModelConfig For(ITask task, ParseResult pr)
    {
        bool attnOnly = pr.GetValue(AttnOnly);
        // An attention-only model has d_mlp 0 (ModelConfig.Create): an explicit --d-mlp would be dropped, so it is refused.
        if (attnOnly && pr.GetResult(DMlp) is { Implicit: false })
            throw new UsageException("--d-mlp does not apply to an attention-only model (--attn-only: the model has no MLP)");
        var shape = ModelConfig.Create(pr.GetValue(DModel), pr.GetValue(NHeads), pr.GetValue(DHead), pr.GetValue(DMlp), pr.GetValue(NLayers),
            task.NCtx, task.DVocab, task.DVocabOut, attnOnly);
        string arch = pr.GetValue(Arch) ?? "basic";
        var c = Preset(arch, shape);

        void MlpOnly(Option o) { if (attnOnly && pr.GetResult(o) is { Implicit: false }) throw new UsageException($"{o.Name} has no meaning with --attn-only (the model has no MLP)"); }

        if (pr.GetValue(Normalization) is string n)
        {
            if (!ModelConfig.TryParseNorm(n, allowNone: true, out var norm))
                throw new UsageException($"--normalization: '{Display.Escape(n)}' is not one of none, LN, LNPre, RMS, RMSPre");
            c = c with { Normalization = norm };
        }
        if (pr.GetValue(FinalRms) is bool fr)
        {
            if (fr && c.Normalization is not (NormKind.LN or NormKind.LNPre))
                throw new UsageException($"--final-rms needs LayerNorm blocks (--normalization LN or LNPre); this model has normalization {ModelConfig.NormName(c.Normalization)}");
            c = c with { FinalRms = fr };
        }
        if (pr.GetValue(Eps) is double eps)
        {
            if (c.Normalization == NormKind.None) throw new UsageException("--eps has no meaning without normalisation (--normalization none)");
            if (!(eps > 0 && double.IsFinite(eps))) throw new UsageException($"--eps must be a positive finite number, got {eps}");
            c = c with { Eps = eps };
        }
        MlpOnly(ActFn);
        if (pr.GetValue(ActFn) is string a)
        {
            var kind = Enum.GetValues<ActKind>().Where(k => ModelConfig.ActName(k) == a).Cast<ActKind?>().FirstOrDefault()
                ?? throw new UsageException($"--act-fn: '{Display.Escape(a)}' is not one of relu, gelu, gelu_new, gelu_fast, gelu_pytorch_tanh, silu");
            c = c with { Act = kind };
        }
        MlpOnly(GatedMlp);
        if (pr.GetValue(GatedMlp) is bool g) c = c with { GatedMlp = g };
        MlpOnly(ParallelAttnMlp);
        if (pr.GetValue(ParallelAttnMlp) is bool p) c = c with { ParallelAttnMlp = p };

        if (pr.GetValue(PositionalEmbedding) is string pos)
        {
            if (pos is not ("standard" or "rotary"))
                throw new UsageException($"--positional-embedding: '{Display.Escape(pos)}' is not one of standard, rotary");
            c = pos == "rotary"
                ? c with { Rotary = true, RotaryDim = c.Rotary ? c.RotaryDim : c.DHead - c.DHead % 2 }
                : c with { Rotary = false, RotaryDim = 0, RotaryBase = 10000, RotaryAdjacentPairs = false };
        }
        foreach (var o in new Option[] { RotaryDim, RotaryBase, RotaryAdjacentPairs })
            if (!c.Rotary && pr.GetResult(o) is { Implicit: false })
                throw new UsageException($"{o.Name} has no meaning without rotary positions (--positional-embedding rotary, or --arch pythia-like or llama-like)");
        if (pr.GetValue(RotaryDim) is int rd)
        {
            if (rd <= 0 || rd % 2 != 0 || rd > c.DHead) throw new UsageException($"--rotary-dim must be a positive even number ≤ d_head {c.DHead}, got {rd}");
            c = c with { RotaryDim = rd };
        }
        if (c.Rotary && c.RotaryDim <= 0)
            throw new UsageException($"rotary positions need at least 2 rotated dimensions; d_head {c.DHead} is too small");
        if (pr.GetValue(RotaryBase) is double rb)
        {
            if (!(rb > 0 && double.IsFinite(rb))) throw new UsageException($"--rotary-base must be a positive finite number, got {rb}");
            c = c with { RotaryBase = rb };
        }
        if (pr.GetValue(RotaryAdjacentPairs) is bool adj) c = c with { RotaryAdjacentPairs = adj };

        if (pr.GetResult(NKeyValueHeads) is { Implicit: false })
        {
            int? kv = pr.GetValue(NKeyValueHeads);
            if (kv is int k && (k <= 0 || c.NHeads % k != 0))
                throw new UsageException($"--n-key-value-heads must be a positive divisor of n_heads {c.NHeads}, got {k}");
            c = c with { NKeyValueHeads = kv == c.NHeads ? null : kv };   // as many key/value heads as heads: plain attention
        }

        if (pr.GetValue(AttnTypes) is string types)
        {
            var list = types.Split(',', StringSplitOptions.TrimEntries);
            if (list.Length != c.NLayers || list.Any(t => t is not ("global" or "local")))
                throw new UsageException($"--attn-types must list 'global' or 'local' for each of the {c.NLayers} layers, comma-separated, got '{Display.Escape(types)}'");
            c = list.All(t => t == "global") ? c with { AttnTypes = null, WindowSize = 0 }
                : c with { AttnTypes = string.Join(",", list), WindowSize = c.WindowSize > 0 ? c.WindowSize : (c.NCtx + 1) / 2 };
        }
        if (pr.GetValue(WindowSize) is int ws)
        {
            if (c.AttnTypes is null) throw new UsageException("--window-size has no meaning without a local layer (--attn-types, or --arch neo-like)");
            if (ws <= 0) throw new UsageException($"--window-size must be positive, got {ws}");
            c = c with { WindowSize = ws };
        }

        if (pr.GetValue(UseAttnScale) is bool us) c = c with { UseAttnScale = us, AttnScale = us ? c.AttnScale : null };
        if (pr.GetValue(AttnScale) is double sc)
        {
            if (!c.UseAttnScale) throw new UsageException("--attn-scale has no meaning with use_attn_scale false (--use-attn-scale false, or --arch neo-like)");
            if (!(sc > 0 && double.IsFinite(sc))) throw new UsageException($"--attn-scale must be a positive finite number, got {sc}");
            // Within 4 ulps of √d_head is TransformerLens's default (ModelConfig.Parse reads it so): written as the default.
            c = c with { AttnScale = ModelConfig.IsDefaultAttnScale(sc, c.DHead) ? null : sc };
        }
        if (pr.GetValue(InverseLayerScale) is bool inv) c = c with { ScaleAttnByInverseLayerIdx = inv };

        if (c.Normalization == NormKind.None) c = c with { FinalRms = false, Eps = 1e-5 };
        if (attnOnly) c = c with { Act = ActKind.Relu, GatedMlp = false, ParallelAttnMlp = false };
        return c.Validated();
    }

    /// <summary>The architecture in words: "basic" or the TransformerLens fields beyond it (ModelConfig.Features).</summary>
    public static string Describe(ModelConfig c) => c.IsBasic
        ? "basic (no normalisation, " + (c.AttnOnly ? "attention-only" : "ReLU") + ", learned positions, global attention scaled by sqrt(d_head))"
        : string.Join(", ", c.Features()) + Details(c);

    static string Details(ModelConfig c)
    {
        var d = new List<string>();
        if (c.Normalization != NormKind.None) d.Add($"eps {c.Eps:R}");
        if (c.Rotary) d.Add($"rotary_dim {c.RotaryDim}, rotary_base {c.RotaryBase:R}, {(c.RotaryAdjacentPairs ? "adjacent (GPT-J)" : "GPT-NeoX")} pairs");
        if (c.AttnTypes is not null) d.Add($"attn_types [{c.AttnTypes}], window_size {c.WindowSize}");
        return d.Count == 0 ? "" : " (" + string.Join("; ", d) + ")";
    }
}
