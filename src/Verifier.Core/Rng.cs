namespace Verifier.Core;

/// <summary>SplitMix64: a tiny, fully specified generator, so that datasets are the same bits on every
/// platform and .NET version for the same seed (System.Random makes no such promise).</summary>
public sealed class Rng(ulong seed)
{
    ulong _state = seed;

    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform integer in [0, n), without modulo bias (Lemire's method with rejection).</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "must be positive");
        ulong bound = (ulong)n;
        while (true)
        {
            UInt128 m = (UInt128)NextUInt64() * bound;
            ulong low = (ulong)m;
            if (low >= bound || low >= (0UL - bound) % bound) return (int)(m >> 64);
        }
    }

    /// <summary>Uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A generator for an independent stream derived from this seed and a label.</summary>
    public static Rng Derive(ulong seed, string stream)
    {
        ulong h = 1469598103934665603UL;
        foreach (char c in stream) { h ^= c; h *= 1099511628211UL; }
        return new Rng(seed ^ h);
    }
}
