using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spectre.Console;
using Verifier.Core;

namespace Verifier.Cli;

/// <summary>Where a command writes: results on <see cref="Out"/> (stdout), messages and progress on
/// <see cref="Err"/> (stderr). With --json, stdout carries exactly one JSON document.</summary>
public sealed class CommandContext(TextWriter output, TextWriter error, bool json, CancellationToken ct)
{
    public TextWriter Out { get; } = output;
    public TextWriter Err { get; } = error;
    public bool Json { get; } = json;
    public CancellationToken Cancel { get; } = ct;

    /// <summary>Live progress bars only on a real terminal; otherwise occasional plain lines.</summary>
    public bool Interactive => ReferenceEquals(Err, Console.Error) && !Console.IsErrorRedirected;

    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public void WriteJson<T>(T value) => Out.WriteLine(JsonSerializer.Serialize(value, JsonOptions));

    /// <summary>Human-readable lines; suppressed under --json so stdout stays one JSON document. Control and
    /// bidirectional characters (which may come from files: lemma names, reasons, paths) are shown escaped
    /// (<see cref="Display.Escape"/>), so no file can rewrite what the terminal shows.</summary>
    public void Say(string line)
    {
        if (!Json) Out.WriteLine(Display.Escape(line));
    }

    /// <summary>A message on stderr, escaped like <see cref="Say"/>.</summary>
    public void Warn(string line) => Err.WriteLine(Display.Escape(line));

    /// <summary>Runs <paramref name="work"/> with a progress callback (fraction in [0, 1], short status text).</summary>
    public T WithProgress<T>(string title, Func<Action<double, string>, T> work)
    {
        if (Interactive)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            return console.Progress()
                .AutoClear(false)
                .HideCompleted(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(),
                         new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(pc =>
                {
                    var task = pc.AddTask(Markup.Escape(Display.Escape(title)), maxValue: 1.0);
                    var result = work((f, status) =>
                    {
                        task.Value = Math.Clamp(f, 0, 1);
                        task.Description = Markup.Escape(Display.Escape(status.Length == 0 ? title : $"{title}  {status}"));
                    });
                    task.Value = 1.0;
                    return result;
                });
        }
        var started = DateTime.UtcNow;
        var last = DateTime.MinValue;
        double lastFraction = -1;
        var value = work((f, status) =>
        {
            var now = DateTime.UtcNow;
            if (f < 1 && f - lastFraction < 0.1 && (now - last).TotalSeconds < 10) return;
            last = now; lastFraction = f;
            Err.WriteLine(Display.Escape($"{title}: {f,6:P0}  {(now - started).TotalSeconds,6:F1} s  {status}"));
        });
        return value;
    }
}

/// <summary>Turns a command body into an exit code: user-facing failures become one "error:" line on stderr.</summary>
public static class CommandRunner
{
    public static int Run(ParseResult pr, Option<bool> json, CancellationToken ct, Func<CommandContext, int> body)
    {
        var config = pr.InvocationConfiguration;
        var ctx = new CommandContext(config.Output, config.Error, pr.GetValue(json), ct);
        try
        {
            return body(ctx);
        }
        catch (VerifierException e)
        {
            ctx.Err.WriteLine($"error: {Display.Escape(e.Message)}");
            return e.ExitCode;
        }
        catch (OperationCanceledException)
        {
            ctx.Err.WriteLine("error: cancelled; nothing was written");
            return 130;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            ctx.Err.WriteLine($"error: {Display.Escape(e.Message)}");
            return ExitCodes.Failure;
        }
    }
}
