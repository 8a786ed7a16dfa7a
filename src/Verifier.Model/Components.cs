using Verifier.Core;
using static TorchSharp.torch;

namespace Verifier.Model;

/// <summary>The TransformerLens components in TorchSharp, each the same formula as its line in
/// <see cref="ReferenceForward"/> (and TransformerLens's components/layer_norm.py, rms_norm.py, mlps/gated_mlp.py,
/// abstract_attention.py, utilities/activation_functions.py), so that float64 logits agree to rounding.</summary>
static class Components
{
    /// <summary>LN: (x − mean x)/√(mean (x − mean x)² + eps)·w + b; LNPre without w, b; RMS: x/√(mean x² + eps)·w;
    /// RMSPre without w; None: x itself. <paramref name="w"/> and <paramref name="b"/> are null where the kind has none.</summary>
    public static Tensor Normalize(Tensor x, NormKind kind, double eps, Tensor? w, Tensor? b)
    {
        if (kind == NormKind.None) return x;
        if (kind is NormKind.LN or NormKind.LNPre) x = x - x.mean([-1], keepdim: true);
        var y = x / (x * x).mean([-1], keepdim: true).add(eps).sqrt();
        if (kind is NormKind.LN or NormKind.RMS) y = y * w!;
        if (kind is NormKind.LN) y = y + b!;
        return y;
    }

    /// <summary>The activations of <see cref="Activation.Apply"/>, elementwise: gelu exact (erf); gelu_new and
    /// gelu_pytorch_tanh with √(2/π); gelu_fast with its truncated constant 0.7978845608; silu = x·σ(x).</summary>
    public static Tensor Activate(ActKind kind, Tensor x) => kind switch
    {
        ActKind.Relu => nn.functional.relu(x),
        ActKind.Gelu => nn.functional.gelu(x),
        ActKind.GeluNew or ActKind.GeluPytorchTanh => 0.5 * x * (1.0 + (Activation.TanhGeluC * (x + 0.044715 * x * x * x)).tanh()),
        ActKind.GeluFast => 0.5 * x * (1.0 + (x * Activation.GeluFastC * (1.0 + 0.044715 * x * x)).tanh()),
        ActKind.Silu => nn.functional.silu(x),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Rotary tables for positions 0..T−1, [T, d_head] each, computed in float64 with
    /// <see cref="ReferenceForward.RotaryAngle"/> and <see cref="ReferenceForward.RotaryPair"/>: with
    /// partner(a) = b and partner(b) = a for each pair (a, b), rotate(x) = x·cos + x[partner]·sin, where cos is cos θ on
    /// both coordinates of a pair and 1 beyond rotary_dim, and sin is −sin θ on a, +sin θ on b and 0 beyond. This is
    /// (x_a cos θ − x_b sin θ, x_b cos θ + x_a sin θ), the reference's rotation, operation for operation.</summary>
    public sealed record RotaryTables(Tensor Cos, Tensor Sin, Tensor Partner) : IDisposable
    {
        public static RotaryTables For(ModelConfig c, long T, ScalarType dtype, Device device)
        {
            int dh = c.DHead;
            var cos = new double[T * dh]; var sin = new double[T * dh];
            var partner = Enumerable.Range(0, dh).Select(e => (long)e).ToArray();
            for (int i = 0; i < c.RotaryDim / 2; i++)
            {
                var (a, b) = ReferenceForward.RotaryPair(c, i);
                partner[a] = b; partner[b] = a;
            }
            for (int t = 0; t < T; t++)
            {
                for (int e = 0; e < dh; e++) cos[t * dh + e] = 1;
                for (int i = 0; i < c.RotaryDim / 2; i++)
                {
                    double th = ReferenceForward.RotaryAngle(c, t, i);
                    var (a, b) = ReferenceForward.RotaryPair(c, i);
                    cos[t * dh + a] = cos[t * dh + b] = Math.Cos(th);
                    sin[t * dh + a] = -Math.Sin(th);
                    sin[t * dh + b] = Math.Sin(th);
                }
            }
            using var c64 = tensor(cos, [T, dh], ScalarType.Float64);
            using var s64 = tensor(sin, [T, dh], ScalarType.Float64);
            // Held beyond the dispose scope they may be built in (Transformer caches them).
            return new RotaryTables(c64.to(dtype, device).DetachFromDisposeScope(), s64.to(dtype, device).DetachFromDisposeScope(),
                tensor(partner, device: device).DetachFromDisposeScope());
        }

        /// <summary>The tables of positions 0..T−1 (T ≤ this table's length): views of these, disposable on their own.</summary>
        public RotaryTables Prefix(long T) => new(Cos.narrow(0, 0, T), Sin.narrow(0, 0, T), Partner.alias());

        /// <summary>x [B, H, T, d_head] rotated.</summary>
        public Tensor Apply(Tensor x) => x * Cos + x.index_select(-1, Partner) * Sin;

        public void Dispose() { Cos.Dispose(); Sin.Dispose(); Partner.Dispose(); }
    }

    /// <summary>The attention mask of <paramref name="layer"/> [T, T], true where query t may not read key s:
    /// s &gt; t (causal), or s &lt; <see cref="ModelConfig.FirstKey"/> (a local layer's window). Row t depends on t
    /// alone, so the mask for a shorter length is this one's top-left corner.</summary>
    public static Tensor Mask(ModelConfig c, int layer, long T, Device device)
    {
        var m = new bool[T * T];
        for (int t = 0; t < T; t++)
        {
            int first = c.FirstKey(layer, t);
            for (int s = 0; s < T; s++) m[t * T + s] = s > t || s < first;
        }
        return tensor(m, [T, T], device: device).DetachFromDisposeScope();   // held beyond the scope it may be built in
    }
}
