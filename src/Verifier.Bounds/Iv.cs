namespace Verifier.Bounds;

/// <summary>A closed interval [Lo, Hi] of reals with outward rounding (proofs/R1-rounding.md): every operation
/// computes its endpoints in float64 (round to nearest) and then steps each one ulp outward, so the exact
/// real result of the operation on any reals in the operands lies inside. exp, log and sqrt step further
/// out (4 ulps), covering the libm's error (≤ 1 ulp for glibc; see R1).</summary>
public readonly record struct Iv(double Lo, double Hi)
{
    public bool IsFinite => double.IsFinite(Lo) && double.IsFinite(Hi);

    public static Iv Point(double x) => new(x, x);
    public static readonly Iv Zero = new(0, 0);
    public double Width => Hi - Lo;
    public double Mag => Math.Max(Math.Abs(Lo), Math.Abs(Hi));

    static double Down(double x) => Math.BitDecrement(x);
    static double Up(double x) => Math.BitIncrement(x);
    static double Down(double x, int n) { for (int i = 0; i < n; i++) x = Math.BitDecrement(x); return x; }
    static double Up(double x, int n) { for (int i = 0; i < n; i++) x = Math.BitIncrement(x); return x; }

    public static Iv operator +(Iv a, Iv b) => new(Down(a.Lo + b.Lo), Up(a.Hi + b.Hi));
    public static Iv operator -(Iv a, Iv b) => new(Down(a.Lo - b.Hi), Up(a.Hi - b.Lo));
    public static Iv operator -(Iv a) => new(-a.Hi, -a.Lo);
    public static Iv operator +(Iv a, double b) => new(Down(a.Lo + b), Up(a.Hi + b));

    public static Iv operator *(Iv a, Iv b)
    {
        double p1 = a.Lo * b.Lo, p2 = a.Lo * b.Hi, p3 = a.Hi * b.Lo, p4 = a.Hi * b.Hi;
        return new(Down(Math.Min(Math.Min(p1, p2), Math.Min(p3, p4))), Up(Math.Max(Math.Max(p1, p2), Math.Max(p3, p4))));
    }

    public static Iv operator *(double w, Iv a) =>
        w >= 0 ? new(Down(w * a.Lo), Up(w * a.Hi)) : new(Down(w * a.Hi), Up(w * a.Lo));

    /// <summary>a / b for b &gt; 0.</summary>
    public static Iv operator /(Iv a, Iv b)
    {
        if (!a.IsFinite || !b.IsFinite) throw new IntervalOverflowException($"division of {a} by {b}");
        if (!(b.Lo > 0)) throw new ArgumentException("division by an interval that is not positive");
        double p1 = a.Lo / b.Lo, p2 = a.Lo / b.Hi, p3 = a.Hi / b.Lo, p4 = a.Hi / b.Hi;
        return new(Down(Math.Min(Math.Min(p1, p2), Math.Min(p3, p4))), Up(Math.Max(Math.Max(p1, p2), Math.Max(p3, p4))));
    }

    public static Iv Exp(Iv a) => new(Math.Max(0, Down(Math.Exp(a.Lo), 4)), Up(Math.Exp(a.Hi), 4));

    /// <summary>log for a &gt; 0.</summary>
    public static Iv Log(Iv a)
    {
        if (!a.IsFinite) throw new IntervalOverflowException($"log of {a}");
        if (!(a.Lo > 0)) throw new ArgumentException("log of an interval that is not positive");
        return new(Down(Math.Log(a.Lo), 4), Up(Math.Log(a.Hi), 4));
    }

    public static Iv Sqrt(Iv a) => new(Math.Max(0, Down(Math.Sqrt(Math.Max(0, a.Lo)), 4)), Up(Math.Sqrt(Math.Max(0, a.Hi)), 4));
    public static Iv Relu(Iv a) => new(Math.Max(0, a.Lo), Math.Max(0, a.Hi));
    public static Iv Max(Iv a, Iv b) => new(Math.Max(a.Lo, b.Lo), Math.Max(a.Hi, b.Hi));
    public static Iv Hull(Iv a, Iv b) => new(Math.Min(a.Lo, b.Lo), Math.Max(a.Hi, b.Hi));
    public static Iv Sq(Iv a)
    {
        double l = a.Lo * a.Lo, h = a.Hi * a.Hi;
        if (a.Lo <= 0 && a.Hi >= 0) return new(0, Up(Math.Max(l, h)));
        return new(Down(Math.Min(l, h)), Up(Math.Max(l, h)));
    }

    public bool Contains(double x) => Lo <= x && x <= Hi;
    public override string ToString() => $"[{Lo:R}, {Hi:R}]";
}

/// <summary>An interval endpoint became ±∞ or NaN: finite weights whose products overflow float64. No finite bound
/// exists; <see cref="BoundProgram.Run"/> reports it as a <see cref="Verifier.Core.NumericException"/> naming the model.</summary>
public sealed class IntervalOverflowException(string what) : ArithmeticException($"{what} is not finite")
{
    public string What { get; } = what;
}

/// <summary>The slack every claim carries (spec/transcript.md): claim = x·(1 + 2⁻³⁰) + 2⁻⁴⁰, rounded up, so that an
/// independent checker whose own outward-rounded evaluation differs in the last bits still certifies it. The
/// generator continues from the slackened value, so the chain of claims stays consistent.</summary>
public static class Claim
{
    public const double Relative = 1.0 / (1L << 30), Absolute = 1.0 / (1L << 40);
    public static double Slack(double x) => Up.Add(Up.Mul(x, 1 + Relative), Absolute);
    public static double[] Slack(double[] xs) => xs.Select(Slack).ToArray();
}

/// <summary>Sound upper bounds on products and sums of non-negative reals given as float64 (rounded up).</summary>
public static class Up
{
    public static double Add(double a, double b) => Math.BitIncrement(a + b);
    public static double Mul(double a, double b) => Math.BitIncrement(a * b);
    public static double Div(double a, double b) => Math.BitIncrement(a / b);
    public static double Sqrt(double a) => Math.BitIncrement(Math.BitIncrement(Math.Sqrt(a)));
    public static double Exp(double a) { double x = Math.Exp(a); for (int i = 0; i < 4; i++) x = Math.BitIncrement(x); return x; }
    public static double Sum(IEnumerable<double> xs) { double s = 0; foreach (var x in xs) s = Add(s, x); return s; }

    /// <summary>‖x‖₂ of exact float64 values, from above.</summary>
    public static double Norm(IEnumerable<double> xs) { double s = 0; foreach (var x in xs) s = Add(s, Mul(Math.Abs(x), Math.Abs(x))); return Sqrt(s); }
}
