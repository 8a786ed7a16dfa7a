using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The FLOP conventions of spec/transcript.md: a product of an m×k and a k×n matrix is 2mkn; an
/// element-wise operation (add, subtract, multiply, divide, exp, log, sqrt, max, ReLU, comparison) is 1 per
/// element; a dot product of length n is 2n; a Euclidean norm of length n is 2n + 1. Counts describe the
/// real-number algorithm a step's claim rests on, not the interval arithmetic used to make it rigorous.</summary>
public static class Flops
{
    /// <summary>One forward pass of a sequence of T tokens with the logits and cross-entropy at
    /// <paramref name="labelled"/> positions: embedding, attention (causal pairs only), MLP, unembedding, CE.</summary>
    public static long Forward(ModelConfig c, int T, int labelled)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, m = c.DMlp, V = c.DVocabOut;
        long pairs = (long)T * (T + 1) / 2;
        long f = T * d;                                                  // W_E[x] + W_pos
        for (int l = 0; l < c.NLayers; l++)
        {
            f += Attention(c, T);
            f += T * d;                                                  // residual add
            if (!c.AttnOnly) f += T * Mlp(c) + T * d;                    // MLP and residual add
        }
        f += labelled * (2 * d * V + V);                                 // logits at labelled positions
        f += labelled * CrossEntropy(V);
        return f;
    }

    /// <summary>Brute force's exact forward pass (proofs/BF-brute-force.md): every layer at every position except the last,
    /// which needs k and v everywhere but q, the scores, softmax, z, W_O, the residual adds and the MLP only at the labelled
    /// positions P (its outputs elsewhere are never read); then logits and CE at P. pairs_P = Σ_{t∈P} (t + 1).</summary>
    public static long BruteForce(ModelConfig c, int[] labels)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocabOut, T = labels.Length;
        long p = 0, pairs = 0;
        for (int t = 0; t < labels.Length; t++) if (labels[t] >= 0) { p++; pairs += t + 1; }
        long f = T * d;                                                  // W_E[x] + W_pos
        for (int l = 0; l < c.NLayers - 1; l++) f += Attention(c, (int)T) + T * d + (c.AttnOnly ? 0 : T * Mlp(c) + T * d);
        f += H * 2 * (2 * T * d * dh + T * dh) + H * (2 * p * d * dh + p * dh);   // last layer: k, v at every position, q at P
        f += H * pairs * (2 * dh + 1) + H * (4 * pairs + p) + H * pairs * 2 * dh;  // scores, softmax, z at P
        f += H * 2 * p * dh * d + p * d + p * d;                                   // W_O, b_O, residual add at P
        if (!c.AttnOnly) f += p * Mlp(c) + p * d;                                  // MLP and residual add at P
        return f + p * (2 * d * V + V) + p * CrossEntropy(V);
    }

    /// <summary>q, k, v (with biases), scores (dot + scale), softmax (max, subtract, exp, sum, divide: 4 per
    /// pair + 1 per row), z, W_O (per head) and b_O.</summary>
    public static long Attention(ModelConfig c, int T)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead;
        long pairs = (long)T * (T + 1) / 2;
        long f = H * 3 * (2 * T * d * dh + T * dh);
        f += H * pairs * (2 * dh + 1);
        f += H * (4 * pairs + T);
        f += H * pairs * 2 * dh;
        f += H * 2 * T * dh * d + T * d;
        return f;
    }

    /// <summary>Per token: h W_in + b_in, ReLU, · W_out + b_out.</summary>
    public static long Mlp(ModelConfig c) => 2L * c.DModel * c.DMlp + c.DMlp + c.DMlp + 2L * c.DMlp * c.DModel + c.DModel;

    /// <summary>CE from logits: subtract z_y (V), exp (V), sum (V), log (1).</summary>
    public static long CrossEntropy(long V) => 3 * V + 1;

    public static long Norm(long n) => 2 * n + 1;
}
