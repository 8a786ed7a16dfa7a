namespace Verifier.Core;

/// <summary>The MLP activations of TransformerLens (utils/activation_functions), in plain float64: the ground truth that
/// the TorchSharp model and the sound enclosures are tested against.</summary>
public static class Activation
{
    /// <summary>√(2/π), the constant of gelu_new and gelu_pytorch_tanh.</summary>
    public static readonly double TanhGeluC = Math.Sqrt(2.0 / Math.PI);
    /// <summary>gelu_fast's own truncated constant, exactly as TransformerLens writes it.</summary>
    public const double GeluFastC = 0.7978845608;

    public static double Apply(ActKind kind, double x) => kind switch
    {
        ActKind.Relu => Math.Max(0, x),
        ActKind.Gelu => x * Phi(x),
        ActKind.GeluNew or ActKind.GeluPytorchTanh => 0.5 * x * (1.0 + Math.Tanh(TanhGeluC * (x + 0.044715 * x * x * x))),
        ActKind.GeluFast => 0.5 * x * (1.0 + Math.Tanh(x * GeluFastC * (1.0 + 0.044715 * x * x))),
        ActKind.Silu => x / (1.0 + Math.Exp(-x)),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>The standard normal CDF Φ(x) = erfc(−x/√2)/2.</summary>
    public static double Phi(double x) => x >= 0 ? 1 - 0.5 * Erfc(x / Math.Sqrt(2)) : 0.5 * Erfc(-x / Math.Sqrt(2));

    /// <summary>erf(x), to about 1e-15 relative: the positive series 2/√π·e^{−x²}·Σ 2ⁿx^{2n+1}/(2n+1)!! for |x| &lt; 3,
    /// 1 − erfc(x) beyond.</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        double ax = Math.Abs(x);
        if (ax >= 3) return Math.Sign(x) * (1 - Erfc(ax));
        double term = ax, sum = ax;
        for (int n = 1; n < 200 && term > 1e-17 * sum; n++)
        {
            term *= 2 * ax * ax / (2 * n + 1);
            sum += term;
        }
        return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * Math.Exp(-ax * ax) * sum;
    }

    /// <summary>erfc(x) = 1 − erf(x): the continued fraction e^{−x²}/(√π·(x + ½/(x + 1/(x + 3/2/(x + …))))) for x ≥ 3.</summary>
    public static double Erfc(double x)
    {
        if (double.IsNaN(x)) return x;
        if (x < 3) return x <= -3 ? 2 - Erfc(-x) : 1 - Erf(x);
        double k = x;
        for (int n = 80; n >= 1; n--) k = x + n / 2.0 / k;
        return Math.Exp(-x * x) / (Math.Sqrt(Math.PI) * k);
    }
}
