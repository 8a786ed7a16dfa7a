using Verifier.Core;

namespace Verifier.TestSupport;

/// <summary>Float64 inputs that stress an a-priori rounding bound (proofs/R2-midpoint-radius.md): ordinary values,
/// huge and tiny magnitudes, subnormals, exact zeros, and near-cancelling pairs; and the exact value of a product at a
/// point of the input box, in rationals.</summary>
static class Adversarial
{
    public static double Value(Rng r)
    {
        double sign = r.NextInt(2) == 0 ? 1 : -1;
        return r.NextInt(9) switch
        {
            0 => 0.0,
            1 => sign * double.Epsilon * (1 + r.NextInt(1000)),                               // subnormal
            2 => sign * Math.ScaleB(1 + r.NextDouble(), -1022 - r.NextInt(40)),                // around the underflow threshold
            3 => sign * Math.ScaleB(1 + r.NextDouble(), 400 + r.NextInt(100)),                 // huge (products may overflow)
            4 => sign * Math.ScaleB(1 + r.NextDouble(), -600 + r.NextInt(100)),                // tiny
            5 => sign * (1 + Math.ScaleB(r.NextDouble(), -50)),                                // cancellation partner of ±1
            _ => sign * (r.NextDouble() * 4),
        };
    }

    public static double Radius(Rng r) => r.NextInt(3) switch
    {
        0 => 0.0,
        1 => Math.Abs(Value(r)),
        _ => r.NextDouble() * 1e-6,
    };

    /// <summary>A point of [m − r, m + r] as an exact rational: m + θr with θ ∈ {−1, −½, 0, ½, 1}.</summary>
    public static Rational Point(Rng r, double m, double rad)
    {
        var theta = r.NextInt(5) switch { 0 => new Rational(-1, 1), 1 => new Rational(-1, 2), 2 => new Rational(0, 1), 3 => new Rational(1, 2), _ => new Rational(1, 1) };
        return Rational.Of(m) + theta * Rational.Of(rad);
    }

    public static bool Within(Rational exact, double mid, double rad) =>
        Rational.Of(mid) - Rational.Of(rad) <= exact && exact <= Rational.Of(mid) + Rational.Of(rad);
}
