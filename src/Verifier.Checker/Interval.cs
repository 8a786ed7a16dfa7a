namespace Verifier.Checker;

/// <summary>The checker's own interval: [Lo, Hi], every end stepped outward after each float64 operation
/// (proofs/R1-rounding.md). exp and log ends move 4 ulps, sqrt 2.</summary>
public readonly struct R(double lo, double hi)
{
    public readonly double Lo = lo, Hi = hi;
    public static R Of(double x) => new(x, x);
    public static readonly R Zero = new(0, 0), One = new(1, 1);
    public double Mag => Math.Max(Math.Abs(Lo), Math.Abs(Hi));

    static double Dn(double x, int k = 1) { while (k-- > 0) x = Math.BitDecrement(x); return x; }
    static double Upw(double x, int k = 1) { while (k-- > 0) x = Math.BitIncrement(x); return x; }

    public static R operator +(R a, R b) => new(Dn(a.Lo + b.Lo), Upw(a.Hi + b.Hi));
    public static R operator -(R a, R b) => new(Dn(a.Lo - b.Hi), Upw(a.Hi - b.Lo));
    public static R operator -(R a) => new(-a.Hi, -a.Lo);
    public static R operator *(R a, R b)
    {
        double w = a.Lo * b.Lo, x = a.Lo * b.Hi, y = a.Hi * b.Lo, z = a.Hi * b.Hi;
        return new(Dn(Math.Min(Math.Min(w, x), Math.Min(y, z))), Upw(Math.Max(Math.Max(w, x), Math.Max(y, z))));
    }
    public static R operator *(double k, R a) => k >= 0 ? new(Dn(k * a.Lo), Upw(k * a.Hi)) : new(Dn(k * a.Hi), Upw(k * a.Lo));
    public static R operator /(R a, R b)
    {
        if (!(b.Lo > 0)) throw new CheckFailure("arithmetic", "division by an interval that is not positive");
        double w = a.Lo / b.Lo, x = a.Lo / b.Hi, y = a.Hi / b.Lo, z = a.Hi / b.Hi;
        return new(Dn(Math.Min(Math.Min(w, x), Math.Min(y, z))), Upw(Math.Max(Math.Max(w, x), Math.Max(y, z))));
    }
    public static R Exp(R a) => new(Math.Max(0, Dn(Math.Exp(a.Lo), 4)), Upw(Math.Exp(a.Hi), 4));
    public static R Log(R a)
    {
        if (!(a.Lo > 0)) throw new CheckFailure("arithmetic", "log of an interval that is not positive");
        return new(Dn(Math.Log(a.Lo), 4), Upw(Math.Log(a.Hi), 4));
    }
    public static R Sqrt(R a) => new(Math.Max(0, Dn(Math.Sqrt(Math.Max(0, a.Lo)), 4)), Upw(Math.Sqrt(Math.Max(0, a.Hi)), 4));
    public static R Relu(R a) => new(Math.Max(0, a.Lo), Math.Max(0, a.Hi));
    public static R Hull(R a, R b) => new(Math.Min(a.Lo, b.Lo), Math.Max(a.Hi, b.Hi));
}

/// <summary>Upward-rounded arithmetic on non-negative reals.</summary>
public static class U
{
    public static double Add(double a, double b) => Math.BitIncrement(a + b);
    public static double Mul(double a, double b) => Math.BitIncrement(a * b);
    public static double Div(double a, double b) => Math.BitIncrement(a / b);
    public static double Sqrt(double a) => Math.BitIncrement(Math.BitIncrement(Math.Sqrt(a)));
    public static double Exp(double a) { double x = Math.Exp(a); for (int i = 0; i < 4; i++) x = Math.BitIncrement(x); return x; }

    /// <summary>‖x‖₂ for every x in the box, from above.</summary>
    public static double Norm(R[] x)
    {
        double s = 0;
        foreach (var v in x) s = Add(s, Mul(v.Mag, v.Mag));
        return Sqrt(s);
    }

    public static double Norm(IEnumerable<double> x)
    {
        double s = 0;
        foreach (var v in x) s = Add(s, Mul(Math.Abs(v), Math.Abs(v)));
        return Sqrt(s);
    }
}

/// <summary>Raised when a step cannot be certified; caught by the checker and turned into a rejection.</summary>
public sealed class CheckFailure(string what, string message) : Exception(message)
{
    public string What { get; } = what;
}
