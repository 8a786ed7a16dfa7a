using System.Numerics;

namespace Verifier.TestSupport;

/// <summary>Exact rationals p/q (q &gt; 0) from doubles, to check that intervals enclose exact results.</summary>
readonly record struct Rational(BigInteger P, BigInteger Q)
{
    public static Rational Of(double x)
    {
        long bits = BitConverter.DoubleToInt64Bits(x);
        bool neg = bits < 0; int exp = (int)((bits >> 52) & 0x7FF); long man = bits & 0xFFFFFFFFFFFFFL;
        if (exp == 0) exp++; else man |= 1L << 52;
        exp -= 1075;
        BigInteger p = man, q = 1;
        if (exp > 0) p <<= exp; else q <<= -exp;
        return new(neg ? -p : p, q);
    }
    public static Rational operator +(Rational a, Rational b) => new(a.P * b.Q + b.P * a.Q, a.Q * b.Q);
    public static Rational operator -(Rational a, Rational b) => new(a.P * b.Q - b.P * a.Q, a.Q * b.Q);
    public static Rational operator *(Rational a, Rational b) => new(a.P * b.P, a.Q * b.Q);
    public static Rational operator /(Rational a, Rational b) => b.P.Sign > 0 ? new(a.P * b.Q, a.Q * b.P) : new(-a.P * b.Q, a.Q * -b.P);
    public static bool operator <=(Rational a, Rational b) => a.P * b.Q <= b.P * a.Q;
    public static bool operator >=(Rational a, Rational b) => b <= a;
}
