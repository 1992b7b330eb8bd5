# Homebrew formula for headroom. This repository is its own tap (Homebrew
# reads Formula/ at a tap's root; since Homebrew 4.6.4 a formula file given
# by path is refused outside a tap):
#   brew tap headroom-dev/headroom https://github.com/headroom-dev/headroom
#   brew install headroom            # the release below; --HEAD for main
# then either `headroom install` (label dev.headroom.agent) or
# `brew services start headroom` (label homebrew.mxcl.headroom) — not both.
# `url` and `sha256` are written by scripts/release-formula at each release.
class Headroom < Formula
  desc "Keeps Apple Silicon Macs usable while MLX jobs train"
  homepage "https://github.com/headroom-dev/headroom"
  url "https://github.com/headroom-dev/headroom/releases/download/v0.1.0/headroom-0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license any_of: ["MIT", "Apache-2.0"]
  head "https://github.com/headroom-dev/headroom.git", branch: "main"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args
    generate_completions_from_executable(bin/"headroom", "completions")
    (man1/"headroom.1").write Utils.safe_popen_read(bin/"headroom", "man")
  end

  # The same job as `headroom install` writes (see launchd/README.md), as far
  # as Homebrew's service DSL reaches. It has no LimitLoadToSessionType key
  # (a user agent loaded by `brew services` from a GUI login lands in the Aqua
  # session anyway), and its keep_alive emits only one KeepAlive key:
  # SuccessfulExit false (restart after any exit that is not a clean stop).
  # throttle_interval is launchd's ThrottleInterval (restart_delay would be
  # TimeOut, a different key).
  service do
    run [opt_bin/"headroom", "run"]
    keep_alive successful_exit: false
    throttle_interval 10
    process_type :standard
    log_path var/"log/headroom/stdout.log"
    error_log_path var/"log/headroom/stderr.log"
  end

  def caveats
    <<~EOS
      Start the agent in your GUI session (notifications need it):
        headroom install          # or: brew services start headroom
      Then allow it in System Settings → General → Login Items
      ("Allow in the Background").
      The JSON log is ~/Library/Logs/headroom/headroom.log.
    EOS
  end

  # tests/homebrew.rs runs these same commands and matches the same strings.
  test do
    assert_match "complete -F", shell_output("#{bin}/headroom completions bash")
    assert_match "effective configuration", shell_output("#{bin}/headroom check-config")
    assert_match "red_below", shell_output("#{bin}/headroom check-config")
  end
end
