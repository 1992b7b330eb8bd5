# Homebrew formula for headroom, from this repository's HEAD:
#   brew install --HEAD ./packaging/homebrew/headroom.rb
# then either `headroom install` (label dev.headroom.agent) or
# `brew services start headroom` (label homebrew.mxcl.headroom) — not both.
class Headroom < Formula
  desc "Keeps Apple Silicon Macs usable while MLX jobs train"
  homepage "https://github.com/headroom-dev/headroom"
  license any_of: ["MIT", "Apache-2.0"]
  head "https://github.com/headroom-dev/headroom.git", branch: "main"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args
    generate_completions_from_executable(bin/"headroom", "completions")
    (man1/"headroom.1").write Utils.safe_popen_read(bin/"headroom", "man")
  end

  # The same job as `headroom install` writes (see launchd/README.md), as far
  # as Homebrew's service DSL reaches: it has no LowPriorityIO and no
  # LimitLoadToSessionType key (a user agent loaded by `brew services` from a
  # GUI login lands in the Aqua session anyway). restart_delay → ThrottleInterval.
  service do
    run [opt_bin/"headroom", "run"]
    keep_alive crashed: true, successful_exit: false
    restart_delay 10
    process_type :standard
    log_path var/"log/headroom/stdout.log"
    error_log_path var/"log/headroom/stderr.log"
  end

  def caveats
    <<~EOS
      Start the agent in your GUI session (notifications need it):
        headroom install          # or: brew services start headroom
      The JSON log is ~/Library/Logs/headroom/headroom.log.
    EOS
  end

  test do
    assert_match "install", shell_output("#{bin}/headroom completions bash")
    assert_match "level", shell_output("#{bin}/headroom check-config")
  end
end
