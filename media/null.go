package media

// The null backend stands in for a sound card that hears silence and plays
// nothing, at the pace of a real one.
func init() { Register("null", openNull) }

type nullBackend struct{ cfg BackendConfig }

var _ Backend = (*nullBackend)(nil)

func openNull(cfg BackendConfig) (Backend, error) { return &nullBackend{cfg: cfg}, nil }

func (b *nullBackend) OpenSource(f Format) (Source, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &nullSource{p: newPacer(b.cfg.Clock, f.SampleRate)}, nil
}

func (b *nullBackend) OpenSink(f Format) (Sink, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &nullSink{p: newPacer(b.cfg.Clock, f.SampleRate)}, nil
}

type nullSource struct{ p *pacer }

var _ Source = (*nullSource)(nil)

func (s *nullSource) Read(frame []int16) error {
	if err := s.p.wait(len(frame)); err != nil {
		return err
	}
	clear(frame)
	return nil
}

func (s *nullSource) Close() error { s.p.close(); return nil }

type nullSink struct{ p *pacer }

var _ Sink = (*nullSink)(nil)

func (s *nullSink) Write(frame []int16) error { return s.p.wait(len(frame)) }

func (s *nullSink) Close() error { s.p.close(); return nil }
