package SharedMapTest;
# Shared set-up for the t/ files: every block gets the module loaded and the
# file's default http and server configuration unless it brings its own. A block
# whose name starts with "..." gets nothing, so it continues the previous block
# in the same running nginx. Works under the real Test::Nginx and the fallback.
use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(use_default_config);

sub use_default_config {
    my (%default) = @_;
    my $preprocessor = main->can('add_block_preprocessor')
        or die "use Test::Nginx::Socket before SharedMapTest";
    $preprocessor->(sub {
        my $block = shift;
        return if $block->name =~ /^\S+ \d+: \.\.\./;
        $block->set_value(main_config => 'load_module $TEST_NGINX_MODULE;')
            if !defined $block->main_config;
        for my $section (qw(http_config config)) {
            $block->set_value($section => $default{$section})
                if defined $default{$section} && !defined $block->$section;
        }
    });
}

1;
