using System.Globalization;
using System.Text;

namespace Verifier.Core;

/// <summary>Text taken from files (lemma names, reasons, paths, dataset content, config values) made safe to print on
/// a terminal: every C0 and C1 control (ESC included), DEL, the line and paragraph separators, the bidirectional
/// overrides, embeddings and isolates (U+202A–U+202E, U+2066–U+2069), the directional marks (U+200E, U+200F,
/// U+061C) and lone surrogates are written as <c>\uXXXX</c>, so a file cannot move the cursor, recolour, reorder
/// or overwrite what the screen shows (e.g. a false verdict).</summary>
public static class Display
{
    public static string Escape(string? s)
    {
        if (s is null) return "";
        int i = 0;
        while (i < s.Length && !NeedsEscape(s, i)) i++;
        if (i == s.Length) return s;
        var sb = new StringBuilder(s.Length + 16).Append(s, 0, i);
        for (; i < s.Length; i++)
        {
            if (NeedsEscape(s, i)) sb.Append("\\u").Append(((int)s[i]).ToString("x4", CultureInfo.InvariantCulture));
            else sb.Append(s[i]);
        }
        return sb.ToString();
    }

    static bool NeedsEscape(string s, int i)
    {
        char c = s[i];
        if (c < 0x20 || c is >= '\u007f' and <= '\u009f') return true;
        if (c is >= '\u202a' and <= '\u202e' or >= '\u2066' and <= '\u2069' or '\u200e' or '\u200f' or '\u061c' or '\u2028' or '\u2029') return true;
        if (char.IsHighSurrogate(c)) return i + 1 >= s.Length || !char.IsLowSurrogate(s[i + 1]);
        if (char.IsLowSurrogate(c)) return i == 0 || !char.IsHighSurrogate(s[i - 1]);
        return false;
    }
}
