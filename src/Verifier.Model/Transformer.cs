using TorchSharp;
using TorchSharp.Modules;
using Verifier.Core;
using static TorchSharp.torch;

namespace Verifier.Model;

/// <summary>The transformer of BOUNDS.md §1 and spec/model.md in TorchSharp, parameters held under their TransformerLens
/// names and shapes: every architecture <see cref="ReferenceForward"/> computes (normalisation, activations, gated and
/// parallel MLPs, rotary, grouped-query and local attention, attention scale options), with the components in
/// Components.cs written as the same formulas.</summary>
public sealed class Transformer : IDisposable
{
    readonly Dictionary<string, Parameter> _p = new(StringComparer.Ordinal);
    /// <summary>Grouped-query attention: the key/value head each query head reads (null without grouped-query attention).</summary>
    readonly Tensor? _kvGroup;
    readonly object _tablesLock = new();
    Tables? _tables;

    /// <summary>What Forward needs besides the parameters and depends only on the sequence length: each layer's attention
    /// mask (one tensor per distinct mask) and the rotary tables, built for the longest length seen so far; a shorter
    /// sequence uses their prefix (row t of each depends on t alone). Built once, not on every Forward (the training loop).
    /// The same type holds one Forward's views of them (<see cref="ViewsFor"/>).</summary>
    sealed class Tables(long length, Tensor[] masks, Components.RotaryTables? rotary) : IDisposable
    {
        public long Length => length;
        public Tensor[] Masks => masks;
        public Components.RotaryTables? Rotary => rotary;
        public void Dispose()
        {
            foreach (var m in masks.Distinct(ReferenceEqualityComparer.Instance)) ((Tensor)m!).Dispose();
            rotary?.Dispose();
        }
    }

    /// <summary>The cached tables' length (test hook), 0 before the first Forward.</summary>
    internal long CachedLength { get { lock (_tablesLock) return _tables?.Length ?? 0; } }

    /// <summary>One Forward's views of the cached tables for its length T (disposed by it): the storage stays alive while
    /// they do, even if a longer sequence meanwhile replaces the cache.</summary>
    Tables ViewsFor(long T)
    {
        lock (_tablesLock)
        {
            var tables = TablesFor(T);
            var corners = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
            var masks = tables.Masks.Select(m =>
            {
                if (!corners.TryGetValue(m, out var corner))
                {
                    using var rows = m.narrow(0, 0, T);
                    corners[m] = corner = rows.narrow(1, 0, T);                 // the top-left T × T corner
                }
                return corner;
            }).ToArray();
            return new Tables(T, masks, tables.Rotary?.Prefix(T));
        }
    }

    /// <summary>The cached tables, rebuilt for <paramref name="T"/> when they are shorter. Called under _tablesLock (by ViewsFor).</summary>
    Tables TablesFor(long T)
    {
        if (_tables is { } t && t.Length >= T) return t;
        var c = Config;
        var byKind = new Dictionary<bool, Tensor>();        // global and local layers: one mask each
        var masks = Enumerable.Range(0, c.NLayers).Select(l =>
        {
            bool local = c.IsLocal(l);
            if (!byKind.TryGetValue(local, out var m)) byKind[local] = m = Components.Mask(c, l, T, Device);
            return m;
        }).ToArray();
        var fresh = new Tables(T, masks, c.Rotary ? Components.RotaryTables.For(c, T, Dtype, Device) : null);
        // A Forward in flight elsewhere holds views of the old tensors (ViewsFor), which keep their storage alive.
        _tables?.Dispose();
        return _tables = fresh;
    }

    public ModelConfig Config { get; }
    public ScalarType Dtype { get; }
    public Device Device { get; }
    public IEnumerable<Parameter> Parameters => _p.Values;

    public Transformer(ModelWeights weights, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        Config = weights.Config;
        Dtype = dtype;
        Device = device ?? CPU;
        foreach (var (name, shape) in Config.ParameterShapes())
        {
            var t = weights[name];
            using var data = tensor(t.Data, shape.Select(s => (long)s).ToArray(), ScalarType.Float64);
            _p[name] = new Parameter(data.to(dtype, Device), requires_grad: true);
        }
        if (Config.KvHeads != Config.NHeads)
            _kvGroup = tensor(Enumerable.Range(0, Config.NHeads).Select(hd => (long)Config.KvHeadOf(hd)).ToArray(), device: Device).DetachFromDisposeScope();
    }

    Tensor P(string name) => _p[name];

    /// <summary>A parameter by its TransformerLens name, detached (for analyses that read weights).</summary>
    public Tensor Weight(string name) => _p[name].detach();

    /// <summary>Logits [B, T, d_vocab_out] for tokens [B, T] (int64). With <paramref name="sites"/>, also the
    /// residual stream at every site of ModelConfig.SiteNames, each [B, T, d_model], detached. With
    /// <paramref name="patch"/>, the residual stream at site i is replaced by patch(i, h) before the model
    /// goes on (sites records the unpatched value).</summary>
    public Tensor Forward(Tensor tokens, List<Tensor>? sites = null, Func<int, Tensor, Tensor>? patch = null)
    {
        var c = Config;
        long B = tokens.shape[0], T = tokens.shape[1];
        if (T > c.NCtx) throw new ArgumentException($"sequence length {T} exceeds n_ctx {c.NCtx}");
        int site = 0;
        Tensor AtSite(Tensor h)
        {
            sites?.Add(h.detach().clone());
            return patch is null ? h : patch(site++, h);
        }
        var h = P("embed.W_E").index_select(0, tokens.reshape(-1)).reshape(B, T, c.DModel);
        if (c.HasPosEmbed) h = h + P("pos_embed.W_pos").narrow(0, 0, T);                   // h⁰ = W_E[x] + W_pos
        h = AtSite(h);
        using var tables = ViewsFor(T);
        var rotary = tables.Rotary;
        for (int l = 0; l < c.NLayers; l++)
        {
            var mask = tables.Masks[l];                                                     // s > t, or outside a local window
            var attn = Attention(l, Norm($"blocks.{l}.ln1.", c.Normalization, h), mask, rotary);
            if (c.AttnOnly)
                h = h + attn;
            else if (c.ParallelAttnMlp)
                h = h + attn + Mlp(l, Norm($"blocks.{l}.ln2.", c.Normalization, h));         // both read resid_pre
            else
            {
                h = AtSite(h + attn);                                                       // h^{l,mid}
                h = h + Mlp(l, Norm($"blocks.{l}.ln2.", c.Normalization, h));               // h^l
            }
            h = AtSite(h);
        }
        return Norm("ln_final.", c.FinalNorm, h).matmul(P("unembed.W_U")) + P("unembed.b_U");
    }

    Tensor Norm(string prefix, NormKind kind, Tensor h) => Components.Normalize(h, kind, Config.Eps,
        kind is NormKind.LN or NormKind.RMS ? P(prefix + "w") : null, kind is NormKind.LN ? P(prefix + "b") : null);

    Tensor Attention(int l, Tensor x, Tensor mask, Components.RotaryTables? rotary)
    {
        var c = Config;
        string a = $"blocks.{l}.attn.", kv = c.NKeyValueHeads is null ? "" : "_";
        int H = c.NHeads, G = c.KvHeads, dh = c.DHead;
        // q: [B, H, T, d_head]; k, v: [B, n_kv, T, d_head], then query head h reads key/value head KvHeadOf(h)
        var q = einsum("btd,hde->bhte", x, P(a + "W_Q")) + P(a + "b_Q").view(1, H, 1, dh);
        var k = einsum("btd,hde->bhte", x, P(a + kv + "W_K")) + P(a + kv + "b_K").view(1, G, 1, dh);
        var v = einsum("btd,hde->bhte", x, P(a + kv + "W_V")) + P(a + kv + "b_V").view(1, G, 1, dh);
        if (_kvGroup is not null) { k = k.index_select(1, _kvGroup); v = v.index_select(1, _kvGroup); }
        if (rotary is not null) { q = rotary.Apply(q); k = rotary.Apply(k); }
        var (sqrtDHead, baseScale, layerFactor) = c.AttnDivisor(l);
        double divisor = (sqrtDHead ? Math.Sqrt(dh) : baseScale) * layerFactor;
        var scores = q.matmul(k.transpose(-1, -2)) / divisor;                          // σ_ts = q_t·k_s / D_l
        var pattern = scores.masked_fill(mask, double.NegativeInfinity).softmax(-1);   // p_t = softmax(σ_t) over allowed s
        var z = pattern.matmul(v);                                                     // z_t = Σ_s p_ts v_s
        return einsum("bhte,hed->btd", z, P(a + "W_O")) + P(a + "b_O");                // Σ_heads z_t W_O + b_O
    }

    /// <summary>act(x W_in + b_in) W_out + b_out; gated: (act(x W_gate) ⊙ x W_in + b_in) W_out + b_out.</summary>
    Tensor Mlp(int l, Tensor x)
    {
        string m = $"blocks.{l}.mlp.";
        var post = Config.GatedMlp
            ? Components.Activate(Config.Act, x.matmul(P(m + "W_gate"))) * x.matmul(P(m + "W_in")) + P(m + "b_in")
            : Components.Activate(Config.Act, x.matmul(P(m + "W_in")) + P(m + "b_in"));
        return post.matmul(P(m + "W_out")) + P(m + "b_out");
    }

    /// <summary>The current parameters as float64 weights, stored on disk as <paramref name="dtype"/>.</summary>
    public ModelWeights ToWeights(string dtype = "F32")
    {
        var tensors = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in Config.ParameterShapes())
        {
            using var cpu = _p[name].detach().to(ScalarType.Float64, CPU).contiguous();
            var data = cpu.data<double>().ToArray();
            if (dtype == "F32") for (int i = 0; i < data.Length; i++) data[i] = (float)data[i];
            tensors[name] = new NamedTensor(name, shape, data, dtype);
        }
        return new ModelWeights(Config, tensors);
    }

    public void Dispose()
    {
        foreach (var p in _p.Values) p.Dispose();
        _p.Clear();
        _kvGroup?.Dispose();
        lock (_tablesLock) { _tables?.Dispose(); _tables = null; }
    }

    /// <summary>Turns sequences of equal length into [B, T] token and label tensors (int64).</summary>
    public static (Tensor Tokens, Tensor Labels) Batch(IReadOnlyList<Sequence> seqs, Device? device = null)
    {
        int T = seqs[0].Tokens.Length;
        var tok = new long[seqs.Count * T];
        var lab = new long[seqs.Count * T];
        for (int b = 0; b < seqs.Count; b++)
        {
            if (seqs[b].Tokens.Length != T) throw new ArgumentException("a batch needs sequences of one length");
            for (int t = 0; t < T; t++) { tok[b * T + t] = seqs[b].Tokens[t]; lab[b * T + t] = seqs[b].Labels[t]; }
        }
        var dev = device ?? CPU;
        return (tensor(tok, [seqs.Count, T]).to(dev), tensor(lab, [seqs.Count, T]).to(dev));
    }
}
