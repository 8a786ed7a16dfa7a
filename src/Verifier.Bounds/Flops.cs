using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The FLOP conventions of spec/transcript.md: a product of an m×k and a k×n matrix is 2mkn; an
/// element-wise operation (add, subtract, multiply, divide, exp, log, sqrt, max, ReLU, comparison) is 1 per
/// element; a dot product of length n is 2n; a Euclidean norm of length n is 2n + 1. Counts describe the
/// real-number algorithm a step's claim rests on, not the interval arithmetic used to make it rigorous.
/// Every architecture's terms (spec/costs.md): normalisations, gated MLPs, rotary rotations, grouped-query key/value
/// heads and local windows; on the basic model each of them is zero or the basic term.</summary>
public static class Flops
{
    /// <summary>One forward pass of a sequence of T tokens with the logits and cross-entropy at
    /// <paramref name="labelled"/> positions: embedding, per layer ln1, attention (causal pairs only, within the window
    /// of a local layer), ln2 and the MLP, then ln_final at every position, unembedding and CE at the labelled ones.</summary>
    public static long Forward(ModelConfig c, int T, int labelled)
    {
        long d = c.DModel, V = c.DVocabOut;
        long f = Embed(c, T);                                            // W_E[x] (+ W_pos)
        for (int l = 0; l < c.NLayers; l++) f += Layer(c, T, l);
        f += T * Normalisation(c, c.FinalNorm);                          // ln_final
        f += labelled * (2 * d * V + V);                                 // logits at labelled positions
        f += labelled * CrossEntropy(V);
        return f;
    }

    /// <summary>Brute force's exact forward pass (proofs/BF-brute-force.md): every layer at every position except the last,
    /// which needs ln1, k and v everywhere but q, the scores, softmax, z, W_O, the residual adds and the MLP only at the labelled
    /// positions P (its outputs elsewhere are never read); then ln_final, logits and CE at P. pairs_P = Σ_{t∈P} (t + 1 − first key).</summary>
    public static long BruteForce(ModelConfig c, int[] labels)
    {
        long d = c.DModel, H = c.NHeads, G = c.KvHeads, dh = c.DHead, V = c.DVocabOut, T = labels.Length;
        int last = c.NLayers - 1;
        long p = 0, pairs = 0;
        for (int t = 0; t < labels.Length; t++) if (labels[t] >= 0) { p++; pairs += Keys(c, last, t); }
        long norm = Normalisation(c, c.Normalization);
        long f = Embed(c, (int)T);                                       // W_E[x] (+ W_pos)
        for (int l = 0; l < last; l++) f += Layer(c, (int)T, l);
        f += T * norm;                                                             // last layer: ln1 at every position
        f += G * 2 * (2 * T * d * dh + T * dh) + H * (2 * p * d * dh + p * dh);   // k, v at every position, q at P
        f += Rotary(c, G, T) + Rotary(c, H, p);                                    // rotary k everywhere, q at P
        f += H * pairs * (2 * dh + 1) + H * (4 * pairs + p) + H * pairs * 2 * dh;  // scores, softmax, z at P
        f += H * 2 * p * dh * d + p * d + p * d;                                   // W_O, b_O, residual add at P
        if (!c.AttnOnly) f += p * (norm + Mlp(c)) + p * d;                         // ln2, MLP and residual add at P
        f += p * Normalisation(c, c.FinalNorm);                                    // ln_final at P
        return f + p * (2 * d * V + V) + p * CrossEntropy(V);
    }

    /// <summary>One block of <paramref name="layer"/> at T positions: ln1, attention, the residual add, and (unless
    /// attention-only) ln2, the MLP and the residual add.</summary>
    static long Layer(ModelConfig c, int T, int layer)
    {
        long d = c.DModel, norm = Normalisation(c, c.Normalization);
        long f = T * norm + Attention(c, T, layer) + T * d;              // ln1, attention, residual add
        if (!c.AttnOnly) f += T * (norm + Mlp(c)) + T * d;               // ln2, MLP and residual add
        return f;
    }

    /// <summary>Attention of <paramref name="layer"/> (for a local layer only the window's pairs are counted): q (n_heads)
    /// and k, v (n_key_value_heads) with biases, the rotation of q and k, scores (dot + scale), softmax (max, subtract,
    /// exp, sum, divide: 4 per pair + 1 per row), z, W_O (per head) and b_O. The normalisation before it is not included.</summary>
    public static long Attention(ModelConfig c, int T, int layer = 0)
    {
        long d = c.DModel, H = c.NHeads, G = c.KvHeads, dh = c.DHead, pairs = Pairs(c, T, layer);
        long f = H * (2 * T * d * dh + T * dh) + G * 2 * (2 * T * d * dh + T * dh);
        f += Rotary(c, H + G, T);
        f += H * pairs * (2 * dh + 1);
        f += H * (4 * pairs + T);
        f += H * pairs * 2 * dh;
        f += H * 2 * T * dh * d + T * d;
        return f;
    }

    /// <summary>The keys query t attends to in <paramref name="layer"/>: t + 1, or the window of a local layer.</summary>
    public static long Keys(ModelConfig c, int layer, int t) => t + 1 - c.FirstKey(layer, t);

    /// <summary>Σ_{t<T} <see cref="Keys"/>: the (query, key) pairs <paramref name="layer"/> attends over T positions
    /// (T(T+1)/2 in a global layer).</summary>
    public static long Pairs(ModelConfig c, int T, int layer)
    {
        long p = 0;
        for (int t = 0; t < T; t++) p += Keys(c, layer, t);
        return p;
    }

    /// <summary>Per token: h W_in + b_in, activation, · W_out + b_out; gated: act(h W_gate) ⊙ (h W_in) + b_in, the gate's
    /// product 2dm and the element-wise product m more. An activation is 1 per element whatever its kind.</summary>
    public static long Mlp(ModelConfig c)
    {
        long d = c.DModel, m = c.DMlp;
        long f = 2 * d * m + m + m + 2 * m * d + d;
        if (c.GatedMlp) f += 2 * d * m + m;
        return f;
    }

    /// <summary>One normalisation of a d-vector: LN/LNPre mean (d + 1), centre (d), square sum (2d), + eps and sqrt (1),
    /// scale (d) = 5d + 2, and ·w, + b (d each) for LN; RMS/RMSPre: square sum, mean and eps, sqrt, scale = 3d + 2, ·w (d)
    /// for RMS; 0 without normalisation.</summary>
    public static long Normalisation(ModelConfig c, NormKind kind)
    {
        long d = c.DModel;
        return kind switch
        {
            NormKind.LN => 5 * d + 2 + 2 * d,
            NormKind.LNPre => 5 * d + 2,
            NormKind.RMS => 3 * d + 2 + d,
            NormKind.RMSPre => 3 * d + 2,
            _ => 0,
        };
    }

    /// <summary>The rotary rotation of <paramref name="vectors"/> queries or keys: 6 per rotated pair (4 products, an add
    /// and a subtract), rotary_dim/2 pairs each (the angles' cos and sin are constants of the configuration); 0 without.</summary>
    public static long Rotary(ModelConfig c, long vectors, long positions) => c.Rotary ? vectors * positions * 6L * (c.RotaryDim / 2) : 0;

    /// <summary>h⁰ = W_E[x] + W_pos: d per position (a lookup without learned positions: 0).</summary>
    public static long Embed(ModelConfig c, int T) => c.HasPosEmbed ? (long)T * c.DModel : 0;

    /// <summary>CE from logits: subtract z_y (V), exp (V), sum (V), log (1).</summary>
    public static long CrossEntropy(long V) => 3 * V + 1;

    public static long Norm(long n) => 2 * n + 1;
}
