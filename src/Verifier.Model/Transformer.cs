using TorchSharp;
using TorchSharp.Modules;
using Verifier.Core;
using static TorchSharp.torch;

namespace Verifier.Model;

/// <summary>The transformer of BOUNDS.md §1 in TorchSharp, parameters held under their TransformerLens names
/// and shapes. Attention with biases and a causal mask, ReLU MLP (or none), learned positions, no LayerNorm.</summary>
public sealed class Transformer : IDisposable
{
    readonly Dictionary<string, Parameter> _p = new(StringComparer.Ordinal);

    public ModelConfig Config { get; }
    public ScalarType Dtype { get; }
    public Device Device { get; }
    public IEnumerable<Parameter> Parameters => _p.Values;

    public Transformer(ModelWeights weights, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        Config = weights.Config;
        Config.RequireBasic("the TorchSharp model (eval, training, activations)");
        Dtype = dtype;
        Device = device ?? CPU;
        foreach (var (name, shape) in Config.ParameterShapes())
        {
            var t = weights[name];
            using var data = tensor(t.Data, shape.Select(s => (long)s).ToArray(), ScalarType.Float64);
            _p[name] = new Parameter(data.to(dtype, Device), requires_grad: true);
        }
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
        var h = AtSite(P("embed.W_E").index_select(0, tokens.reshape(-1)).reshape(B, T, c.DModel)
              + P("pos_embed.W_pos").narrow(0, 0, T));                                  // h⁰ = W_E[x] + W_pos
        using var mask = ones(T, T, ScalarType.Bool, Device).triu(1);                     // s > t is masked
        for (int l = 0; l < c.NLayers; l++)
        {
            h = h + Attention(l, h, mask);                                              // h^{l,mid}
            if (!c.AttnOnly)
            {
                h = AtSite(h);
                h = h + Mlp(l, h);                                                      // h^l
            }
            h = AtSite(h);
        }
        return h.matmul(P("unembed.W_U")) + P("unembed.b_U");
    }

    Tensor Attention(int l, Tensor h, Tensor mask)
    {
        string a = $"blocks.{l}.attn.";
        int H = Config.NHeads, dh = Config.DHead;
        // q, k, v: [B, H, T, d_head]
        var q = einsum("btd,hde->bhte", h, P(a + "W_Q")) + P(a + "b_Q").view(1, H, 1, dh);
        var k = einsum("btd,hde->bhte", h, P(a + "W_K")) + P(a + "b_K").view(1, H, 1, dh);
        var v = einsum("btd,hde->bhte", h, P(a + "W_V")) + P(a + "b_V").view(1, H, 1, dh);
        var scores = q.matmul(k.transpose(-1, -2)) / Math.Sqrt(dh);                    // σ_ts = q_t·k_s/√d_head
        var pattern = scores.masked_fill(mask, double.NegativeInfinity).softmax(-1);   // p_t = softmax(σ_t), s ≤ t
        var z = pattern.matmul(v);                                                     // z_t = Σ_s p_ts v_s
        return einsum("bhte,hed->btd", z, P(a + "W_O")) + P(a + "b_O");                // Σ_heads z_t W_O + b_O
    }

    Tensor Mlp(int l, Tensor h)
    {
        string m = $"blocks.{l}.mlp.";
        return nn.functional.relu(h.matmul(P(m + "W_in")) + P(m + "b_in")).matmul(P(m + "W_out")) + P(m + "b_out");
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
